// A small line chart on a canvas: the last N samples, scaled to the largest.

export class Chart {
  constructor(canvas, length = 60) {
    this.canvas = canvas;
    this.samples = new Array(length).fill(0);
  }

  push(value) {
    this.samples.push(value);
    this.samples.shift();
    this.draw();
  }

  draw() {
    const { canvas, samples } = this;
    const ctx = canvas.getContext('2d');
    const [w, h, pad] = [canvas.width, canvas.height, 8];
    ctx.clearRect(0, 0, w, h);
    const top = Math.max(1, ...samples);
    ctx.strokeStyle = '#d9dee7';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(0, h - pad);
    ctx.lineTo(w, h - pad);
    ctx.stroke();
    ctx.fillStyle = '#667085';
    ctx.font = '20px system-ui, sans-serif';
    ctx.fillText(`${top.toFixed(top < 10 ? 1 : 0)}/s`, 6, 22);
    ctx.strokeStyle = '#2563eb';
    ctx.lineWidth = 3;
    ctx.beginPath();
    samples.forEach((v, i) => {
      const x = (i / (samples.length - 1)) * w;
      const y = h - pad - (v / top) * (h - 2 * pad - 20);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}
