// The parts of the drawing and upload pages that show an answer: the model's input and its top 3.
// Pasted into each page where it says `// @include shared.js` (mnistlab/serving/http_app.py).
function showPreview(input) {  // rows of gray values, or of [r, g, b] for colour models; all in [0, 1]
  preview.height = input.length;
  preview.width = input[0].length;
  const image = preview.getContext("2d").createImageData(preview.width, preview.height);
  input.forEach((row, y) => row.forEach((value, x) => {
    const rgb = Array.isArray(value) ? value : [value, value, value];
    const pixel = rgb.map((v) => Math.round(Math.max(0, Math.min(1, v)) * 255));
    image.data.set([...pixel, 255], (y * preview.width + x) * 4);
  }));
  preview.getContext("2d").putImageData(image, 0, 0);
}

function showTop3(top3) {
  top3El.replaceChildren(...top3.map(({ label, probability }) => {
    const li = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, probability * 150)}px`;
    const text = document.createElement("span");
    text.className = "entry";
    text.textContent = `${label}: ${(probability * 100).toFixed(1)} %`;
    li.append(text, bar);
    return li;
  }));
}
