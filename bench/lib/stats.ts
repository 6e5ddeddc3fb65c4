/** Small statistics helpers. */

export interface Regression {
  readonly slope: number;
  readonly intercept: number;
  /** Coefficient of determination (1 = perfectly linear). */
  readonly r2: number;
}

/** Least-squares line through (xs[i], ys[i]). */
export function linearRegression(xs: readonly number[], ys: readonly number[]): Regression {
  const n = xs.length;
  if (n !== ys.length || n < 2) throw new Error('linearRegression: need at least two (x, y) pairs');
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += xs[i] as number;
    sy += ys[i] as number;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] as number) - mx;
    const dy = (ys[i] as number) - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) throw new Error('linearRegression: all x values are equal');
  const slope = sxy / sxx;
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy);
  return { slope, intercept: my - slope * mx, r2 };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function max(values: readonly number[]): number {
  return values.reduce((a, b) => (b > a ? b : a), -Infinity);
}
