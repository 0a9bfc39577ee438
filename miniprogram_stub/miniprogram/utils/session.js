// Who is using the phone and where their day starts: the home page and tab bar of each role, and
// the guard a page calls before it loads anything (a customer never lands on a staff page, a rep
// never on a manager's).
'use strict';

const STAFF_TABS = [
  { pagePath: 'pages/leads/leads', text: '线索', icon: 'leads' },
  { pagePath: 'pages/pool/pool', text: '公海', icon: 'pool' },
  { pagePath: 'pages/tasks/tasks', text: '待办', icon: 'tasks' },
  { pagePath: 'pages/notifications/notifications', text: '消息', icon: 'messages' },
  { pagePath: 'pages/me/me', text: '我的', icon: 'me' }
];
const STAFF = ['rep', 'manager', 'admin'];
const MANAGERS = ['manager', 'admin'];
const CUSTOMER_HOME = '/pages/home/home';
const STAFF_HOME = '/pages/leads/leads';
const LOGIN = '/pages/login/login';

function isStaff(user) { return Boolean(user && STAFF.indexOf(user.role) >= 0); }
function isManager(user) { return Boolean(user && MANAGERS.indexOf(user.role) >= 0); }
function tabsFor(user) { return isStaff(user) ? STAFF_TABS : []; }
function homeOf(user) { return !user ? LOGIN : isStaff(user) ? STAFF_HOME : CUSTOMER_HOME; }

// Open the user's home: a tab page for staff (switchTab), the customer home otherwise.
function goHome(wx, user) {
  const url = homeOf(user);
  if (url === STAFF_HOME) wx.switchTab({ url });
  else wx.reLaunch({ url });
}

// For a page's onLoad/onShow: true when `user` may be here; otherwise opens the right place.
// roles: 'staff', 'manager', 'customer' or 'any' (logged in).
function guard(wx, user, roles) {
  const want = [].concat(roles || 'any');
  if (!user) { wx.reLaunch({ url: LOGIN }); return false; }
  const ok = want.some((r) => (r === 'any') || (r === 'staff' && isStaff(user)) || (r === 'manager' && isManager(user)) || (r === 'customer' && user.role === 'customer'));
  if (!ok) goHome(wx, user);
  return ok;
}

// Whether a page is on the tab bar (those open with switchTab, which takes no query).
function isTab(url) {
  const route = String(url || '').replace(/^\//, '').split('?')[0];
  return STAFF_TABS.some((t) => t.pagePath === route);
}

// Open a page the way WeChat requires: switchTab for a tab page, navigateTo for every other one.
function open(wx, url) {
  if (isTab(url)) wx.switchTab({ url: '/' + String(url).replace(/^\//, '').split('?')[0] });
  else wx.navigateTo({ url });
}

// On a tab page's onShow: the custom tab bar shows this role's tabs with this one selected.
function selectTab(page, user) {
  const bar = page && typeof page.getTabBar === 'function' ? page.getTabBar() : null;
  if (!bar) return;
  const tabs = tabsFor(user);
  bar.setData({ items: tabs, selected: tabs.findIndex((t) => t.pagePath === page.route) });
}

module.exports = { STAFF_TABS, isStaff, isManager, tabsFor, homeOf, goHome, guard, selectTab, isTab, open, LOGIN, STAFF_HOME, CUSTOMER_HOME };
