/**
 * A static file server for release folders, as a CDN serves them (GET, HTTP Range `bytes=N-` or
 * `bytes=N-M` answered with 206 and Content-Range, an end past the file's clamped), on 127.0.0.1 at a free port, with faults a test can
 * arm: a connection dropped after some body bytes, a body cut short or too long, a status code,
 * a stall (headers never sent), a flipped byte, a gzip-coded body. Optionally it answers
 * cross-origin requests as a CDN that allows CORS simple requests only (no preflight). Every
 * request is logged with the body bytes sent and the headers it came with.
 */
import { gzipSync } from 'node:zlib';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';

/** A fault for the next `times` requests whose path `match`es. */
export interface Fault {
  match: (urlPath: string) => boolean;
  times: number;
  /**
   * drop: send `at` body bytes, then destroy the connection; truncate: no Content-Length, `at`
   * bytes, then a clean end; overlong: no Content-Length, the file and 100 more bytes; status:
   * answer `status` with no body; stall: never answer; tamper: flip the byte at `at`; trickle:
   * the whole body, `at` bytes per write, 2 ms apart (small network reads); slow: one byte
   * every `at` ms (a slow-retrieval attack: never idle for long, never done); whole: a Range
   * header ignored, the whole file answered with 200 (as some servers and proxies do); gzip: the
   * body (or the range asked for) gzip-coded, with `Content-Encoding: gzip` and the coded length.
   */
  kind: 'drop' | 'truncate' | 'overlong' | 'status' | 'stall' | 'tamper' | 'trickle' | 'slow' | 'whole' | 'gzip';
  at?: number;
  status?: number;
  /** Headers of a `status` answer (e.g. `Retry-After`). */
  headers?: Record<string, string>;
}

/** One request served. */
export interface ServedRequest {
  path: string;
  /** The Range start asked for (0 without a Range header). */
  start: number;
  status: number;
  /** Body bytes written. */
  sent: number;
  fault?: Fault['kind'];
  /** The request's method and headers (lower-case names). */
  method: string;
  headers: Record<string, string | string[] | undefined>;
}

/** How the server answers cross-origin requests. */
export interface ServeOptions {
  /**
   * `simple`: as a host that allows CORS simple requests only: every answer carries
   * `Access-Control-Allow-Origin: *` (and exposes `Content-Range`), and a preflight (`OPTIONS`)
   * is answered 405 without CORS headers, so a request that needs one fails in a browser.
   */
  cors?: 'simple';
}

export interface ReleaseServer {
  /** The base URL of the release folder (ends with `/`). */
  url: string;
  log: ServedRequest[];
  faults: Fault[];
  /** Serve `bytes` at `urlPath` (e.g. `/manifest.json`) instead of the file. */
  override(urlPath: string, bytes: Uint8Array | undefined): void;
  close(): Promise<void>;
}

/** Serve `root` (a release folder). */
export async function serveRelease(root: string, serveOptions: ServeOptions = {}): Promise<ReleaseServer> {
  const log: ServedRequest[] = [];
  const faults: Fault[] = [];
  const overrides = new Map<string, Uint8Array>();
  const sockets = new Set<Socket>();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const fault = faults.find((f) => f.times > 0 && f.match(urlPath));
    const range = fault?.kind === 'whole' ? null : /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    // The last byte asked for (inclusive), when the range names one.
    const last = range && range[2] !== '' ? Number(range[2]) : Infinity;
    const entry: ServedRequest = { path: urlPath, start, status: 200, sent: 0, method: req.method ?? 'GET', headers: { ...req.headers } };
    log.push(entry);
    if (serveOptions.cors === 'simple') {
      if (req.method === 'OPTIONS') {
        entry.status = 405;
        res.writeHead(405).end();
        return;
      }
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, Content-Encoding');
    }
    if (fault) {
      fault.times--;
      entry.fault = fault.kind;
    }
    if (fault?.kind === 'stall') return; // headers never sent; the socket is closed by close()
    if (fault?.kind === 'status') {
      entry.status = fault.status ?? 500;
      res.writeHead(entry.status, fault.headers ?? {}).end();
      return;
    }
    let bytes = overrides.get(urlPath);
    if (!bytes) {
      const file = path.join(root, path.normalize(urlPath).replace(/^([/\\])+/, ''));
      if (!file.startsWith(path.resolve(root))) {
        entry.status = 403;
        res.writeHead(403).end();
        return;
      }
      bytes = await readFile(file).then((b) => new Uint8Array(b), () => undefined);
    }
    if (!bytes) {
      entry.status = 404;
      res.writeHead(404).end();
      return;
    }
    if (fault?.kind === 'tamper') {
      bytes = bytes.slice();
      bytes[fault.at ?? 0] ^= 0x40;
    }
    if (start > bytes.length || (range && start === bytes.length && bytes.length > 0)) {
      entry.status = 416;
      res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
      return;
    }
    const body = Buffer.from(bytes.subarray(start, Math.min(bytes.length, last + 1)));
    entry.status = range ? 206 : 200;
    const type = urlPath.endsWith('.html') ? 'text/html' : urlPath.endsWith('.js') ? 'text/javascript' : urlPath.endsWith('.json') ? 'application/json' : urlPath.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
    const headers: Record<string, string | number> = { 'Content-Type': type, 'Accept-Ranges': 'bytes' };
    if (range) headers['Content-Range'] = `bytes ${start}-${start + body.length - 1}/${bytes.length}`;
    if (fault?.kind === 'truncate' || fault?.kind === 'overlong') {
      res.writeHead(entry.status, headers);
      const out = fault.kind === 'truncate' ? body.subarray(0, fault.at ?? body.length >> 1) : Buffer.concat([body, Buffer.alloc(100, 7)]);
      entry.sent = out.length;
      res.end(out);
      return;
    }
    if (fault?.kind === 'gzip') {
      const coded = gzipSync(body);
      res.writeHead(entry.status, { ...headers, 'Content-Encoding': 'gzip', 'Content-Length': coded.length });
      entry.sent = coded.length;
      res.end(coded);
      return;
    }
    headers['Content-Length'] = body.length;
    res.writeHead(entry.status, headers);
    if (fault?.kind === 'drop') {
      const part = body.subarray(0, Math.min(body.length, fault.at ?? body.length >> 1));
      entry.sent = part.length;
      // Close with a FIN after the bytes (socket.end), not a reset (destroy): a reset can make the
      // client's kernel discard bytes it has not handed to the reader yet, so the download would
      // see no bytes at all on a busy machine instead of `at` of them.
      res.write(part, () => setTimeout(() => res.socket?.end(), 50));
      return;
    }
    if (fault?.kind === 'slow') {
      for (let at = 0; at < body.length && !res.destroyed; at++) {
        await new Promise<void>((resolve) => res.write(body.subarray(at, at + 1), () => setTimeout(resolve, fault.at ?? 300)));
        entry.sent++;
      }
      res.end();
      return;
    }
    if (fault?.kind === 'trickle') {
      const step = fault.at ?? 64;
      for (let at = 0; at < body.length && !res.destroyed; at += step) {
        const piece = body.subarray(at, at + step);
        await new Promise<void>((resolve) => res.write(piece, () => setTimeout(resolve, 2)));
        entry.sent += piece.length;
      }
      res.end();
      return;
    }
    entry.sent = body.length;
    res.end(body);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      res.destroy(e as Error);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    log,
    faults,
    override(urlPath, bytes) {
      if (bytes) overrides.set(urlPath, bytes);
      else overrides.delete(urlPath);
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
