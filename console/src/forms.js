// What every editing page shares: the server's field errors next to the fields, and a draft kept in
// sessionStorage so an expired session (back to login) loses nothing that was typed.
import { reactive, watch } from 'vue';
import { ElMessage } from 'element-plus';
import { t } from './i18n.js';

// {field path → message} from error.details; the whole-form message under ''.
export function useFieldErrors() {
  const errors = reactive({});
  return {
    errors,
    clear() { for (const k of Object.keys(errors)) delete errors[k]; },
    // The message for a field, or for any of its children (fields.0.key shows on fields.0 too).
    of(name) {
      if (errors[name]) return errors[name];
      const child = Object.keys(errors).find((k) => k.startsWith(name + '.'));
      return child ? errors[child] : '';
    },
    show(err) {
      for (const k of Object.keys(errors)) delete errors[k];
      const details = (err && err.details) || [];
      for (const d of details) if (d.field) errors[d.field] = errors[d.field] ? errors[d.field] + '; ' + d.message : d.message;
      if (err && err.status !== 401) ElMessage({ type: 'error', message: err.message || t('error'), grouping: true });
    },
  };
}

const DRAFTS = 'mpcrm.console.draft.';
// A reactive copy of `initial`, restored from sessionStorage and saved there on every change.
export function useDraft(name, initial) {
  const key = DRAFTS + name;
  const saved = sessionStorage.getItem(key);
  const state = reactive(JSON.parse(JSON.stringify(initial)));
  let restored = false;
  if (saved) {
    try { Object.assign(state, JSON.parse(saved)); restored = true; } catch (e) { sessionStorage.removeItem(key); }
  }
  watch(state, (value) => sessionStorage.setItem(key, JSON.stringify(value)), { deep: true });
  return {
    state,
    restored,
    reset(value) {
      for (const k of Object.keys(state)) delete state[k];
      Object.assign(state, JSON.parse(JSON.stringify(value || initial)));
      sessionStorage.removeItem(key);
      setTimeout(() => sessionStorage.removeItem(key), 0);
    },
  };
}

export const yuan = (fen) => (fen == null ? '' : '¥' + (fen / 100).toLocaleString(undefined, { minimumFractionDigits: 2 }));
export const day = (iso) => (iso ? iso.slice(0, 10) : '');
export const when = (iso) => (iso ? iso.replace('T', ' ').slice(0, 16) : '');
