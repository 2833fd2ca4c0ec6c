import { computed, shallowRef } from 'vue';

// The app's router: the browser location and its history entry's state as reactive state, moved with history.pushState.
const currentUrl = shallowRef(new URL(window.location.href));
const currentState = shallowRef<unknown>(window.history.state);

window.addEventListener('popstate', (event) => {
  currentUrl.value = new URL(window.location.href);
  currentState.value = event.state;
});

/** Goes to `href` within the app; `state` is kept with the history entry (back, forward and reload restore it). */
export function navigate(href: string, state: unknown = null): void {
  window.history.pushState(state, '', href);
  currentUrl.value = new URL(window.location.href);
  currentState.value = state;
  window.scrollTo(0, 0);
}

export function useLocation() {
  return {
    path: computed(() => currentUrl.value.pathname),
    query: computed(() => currentUrl.value.searchParams),
    state: computed(() => currentState.value),
  };
}
