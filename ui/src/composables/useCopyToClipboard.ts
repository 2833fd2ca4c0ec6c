import { onScopeDispose, ref } from 'vue';

/**
 * Copies text to the clipboard. The Clipboard API needs a secure context (https or localhost);
 * elsewhere `copied` stays false and `failed` turns true so the text can be shown for copying by hand.
 */
export function useCopyToClipboard(resetAfterMs = 2000) {
  const copied = ref(false);
  const failed = ref(false);
  let resetTimer: number | undefined;

  async function copy(text: string): Promise<void> {
    window.clearTimeout(resetTimer);
    try {
      await navigator.clipboard.writeText(text);
      copied.value = true;
      failed.value = false;
      resetTimer = window.setTimeout(() => (copied.value = false), resetAfterMs);
    } catch {
      copied.value = false;
      failed.value = true;
    }
  }

  onScopeDispose(() => window.clearTimeout(resetTimer));

  return { copied, failed, copy };
}
