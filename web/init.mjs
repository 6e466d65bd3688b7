// Trunk initializer (index.html `data-initializer`): reports a WebAssembly module that fails to
// load or start in the page instead of only in the console.
export default function initializer() {
  return {
    onFailure(error) {
      const box = document.getElementById('gpu-error');
      box.textContent = `Could not start the WebAssembly module: ${error}`;
      box.hidden = false;
      document.body.dataset.gpu = 'unavailable';
    },
  };
}
