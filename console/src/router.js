// A small history router for /console/<page>; Tornado answers every such path with index.html.
import { reactive } from 'vue';

const PREFIX = '/console/';
const current = () => location.pathname.startsWith(PREFIX) ? location.pathname.slice(PREFIX.length).replace(/\/$/, '') : '';
export const route = reactive({ page: current(), query: Object.fromEntries(new URLSearchParams(location.search)) });

export function go(page, query) {
  const search = query ? '?' + new URLSearchParams(query) : '';
  history.pushState(null, '', PREFIX + page + search);
  route.page = page;
  route.query = query || {};
}
window.addEventListener('popstate', () => {
  route.page = current();
  route.query = Object.fromEntries(new URLSearchParams(location.search));
});
