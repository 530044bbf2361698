// Owns joining byte chunks into one buffer (coalesced writes, reassembled lines, whole inputs).

/**
 * Joins `chunks` into one Uint8Array. A single chunk is returned as it is (no copy), so callers
 * MUST NOT modify the result when they do not own the chunks. `totalBytes` may be passed when the
 * caller already knows it.
 */
export function concatBytes(chunks: readonly Uint8Array[], totalBytes?: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let size = totalBytes ?? 0;
  if (totalBytes === undefined) { for (const c of chunks) size += c.length; }
  const out = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}
