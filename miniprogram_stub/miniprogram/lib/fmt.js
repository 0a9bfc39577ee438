// Dates and labels for the pages built on lib/view.js, from utils/format.js (the one place for
// the business time zone, Asia/Shanghai, and the Chinese words), in the shape these pages use.
'use strict';

const format = require('../utils/format');

// Today in the business zone, "YYYY-MM-DD".
function today(nowMs) { return format.dateValue(nowMs === undefined ? Date.now() : nowMs); }

// The business-zone date and time of an instant, for pickers: {date: "YYYY-MM-DD", time: "HH:MM"}.
function parts(iso) { return { date: format.dateValue(iso), time: format.time(iso) }; }

module.exports = {
  today,
  parts,
  day: (v, now) => format.day(v, now),
  when: (v, now) => format.when(v, now),
  toIso: (date, time) => format.isoAt(date, time),
  stageLabel: (code) => format.stage(code),
  format
};
