// The lead lifecycle as the server enforces it (server/services/lifecycle.py): which stage moves a
// rep may offer and which need a reason. The server's 409 lead.invalid_transition lists the
// allowed targets; the lead page uses that list when it gets one.
'use strict';

const TRANSITIONS = {
  new: ['contacted', 'lost'],
  contacted: ['qualified', 'lost'],
  qualified: ['customer', 'lost'],
  customer: ['retained', 'at_risk'],
  retained: ['at_risk'],
  at_risk: ['churned', 'retained'],
  churned: ['won_back'],
  won_back: ['retained', 'at_risk'],
  lost: ['contacted']
};
const REASON_REQUIRED = ['new>lost', 'contacted>lost', 'qualified>lost', 'lost>contacted', 'at_risk>churned'];

function allowed(stage) { return (TRANSITIONS[stage] || []).slice(); }
function needsReason(from, to) { return REASON_REQUIRED.indexOf(from + '>' + to) >= 0; }
// The allowed targets a 409 lead.invalid_transition names: details [{field: "to", code: "allowed",
// message: "可以变为：contacted, lost", value: "contacted,lost"}]. The data is `value` (the message is
// for a person, in their language); an older server put the list in `message` itself.
function allowedFromError(err) {
  const d = err && Array.isArray(err.details) ? err.details : [];
  const item = d.find((x) => x && x.code === 'allowed' && (typeof x.value === 'string' || typeof x.message === 'string'));
  if (!item) return null;
  const list = typeof item.value === 'string' ? item.value : item.message;
  return list.split(',').map((s) => s.trim()).filter(Boolean);
}

module.exports = { TRANSITIONS, allowed, needsReason, allowedFromError };
