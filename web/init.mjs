// Trunk initializer (index.html `data-initializer`): reports a WebAssembly module that fails to
// load or start in the page instead of only in the console, and keeps the module's exports as
// `window.ddpmWasm` (the e2e tests read its memory size).
export default function initializer() {
  return {
    onSuccess(wasm) {
      window.ddpmWasm = wasm;
    },
    onFailure(error) {
      const box = document.getElementById('gpu-error');
      box.textContent = `Could not start the WebAssembly module: ${error}`;
      box.hidden = false;
      document.body.dataset.gpu = 'unavailable';
    },
  };
}
