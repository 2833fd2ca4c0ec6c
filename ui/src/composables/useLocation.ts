import { computed, shallowRef } from 'vue';

// The app's router: the browser location as reactive state, moved with history.pushState.
const currentUrl = shallowRef(new URL(window.location.href));

window.addEventListener('popstate', () => {
  currentUrl.value = new URL(window.location.href);
});

export function navigate(href: string): void {
  window.history.pushState(null, '', href);
  currentUrl.value = new URL(window.location.href);
  window.scrollTo(0, 0);
}

export function useLocation() {
  return {
    path: computed(() => currentUrl.value.pathname),
    query: computed(() => currentUrl.value.searchParams),
  };
}
