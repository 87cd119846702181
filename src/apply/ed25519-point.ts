/**
 * The check a trusted Ed25519 public key gets when it is parsed (RFC 8032 §5.1.3 decoding, then
 * the order): the 32 bytes must be the canonical encoding of a point on edwards25519 whose order
 * is the group order L (not of small order, no torsion component). Written here, with BigInt
 * arithmetic in extended coordinates, so that `@noble/ed25519` (the verifier for runtimes
 * without WebCrypto Ed25519) is loaded only where it is used; test/ed25519-point.test.ts checks it
 * against noble's own decoding and order checks.
 */

const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const mod = (a: bigint): bigint => {
  const r = a % P;
  return r < 0n ? r + P : r;
};
function pow(base: bigint, exp: bigint): bigint {
  let r = 1n;
  let b = mod(base);
  for (let e = exp; e > 0n; e >>= 1n) {
    if (e & 1n) r = (r * b) % P;
    b = (b * b) % P;
  }
  return r;
}
const D = mod(-121665n * pow(121666n, P - 2n));
const D2 = (2n * D) % P;
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

/** A point in extended coordinates (X : Y : Z : T), x = X/Z, y = Y/Z, x y = T/Z. */
type Point = [bigint, bigint, bigint, bigint];

function add([x1, y1, z1, t1]: Point, [x2, y2, z2, t2]: Point): Point {
  const a = mod((y1 - x1) * (y2 - x2));
  const b = mod((y1 + x1) * (y2 + x2));
  const c = mod(t1 * D2 * t2);
  const d = mod(2n * z1 * z2);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function times(point: Point, n: bigint): Point {
  let r: Point = [0n, 1n, 1n, 0n];
  for (let i = BigInt(n.toString(2).length - 1); i >= 0n; i--) {
    r = add(r, r);
    if ((n >> i) & 1n) r = add(r, point);
  }
  return r;
}

const isIdentity = ([x, y, z]: Point): boolean => x === 0n && y === z;

/**
 * Why the 32 bytes `raw` are not a usable Ed25519 public key, or undefined when they are: the
 * canonical encoding of a point on the curve, of order L.
 */
export function publicKeyProblem(raw: Uint8Array): string | undefined {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(raw[i]);
  const sign = y >> 255n;
  y &= (1n << 255n) - 1n;
  if (y >= P) return 'not a point on the curve';
  const yy = (y * y) % P;
  const u = mod(yy - 1n);
  const v = mod(D * yy + 1n);
  const v3 = (v * v * v) % P;
  let x = mod(u * v3 * pow(u * v3 * v3 * v, (P - 5n) / 8n));
  const vxx = mod(v * x * x);
  if (vxx === mod(-u)) x = mod(x * SQRT_M1);
  else if (vxx !== u) return 'not a point on the curve';
  if (x === 0n && sign === 1n) return 'not a point on the curve';
  if ((x & 1n) !== sign) x = P - x;
  const point: Point = [x, y, 1n, mod(x * y)];
  if (isIdentity(times(point, 8n)) || !isIdentity(times(point, L))) return 'a point of small or mixed order, which no real key is';
  return undefined;
}
