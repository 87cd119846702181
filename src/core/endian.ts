/** Whether this host stores numbers little-endian (the byte order of every format here). */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
