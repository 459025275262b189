/** An RNG that hands out exactly the given byte strings, in order, and checks each request's length (RFC 9591 vectors). */
export function scriptedRng(chunks: Uint8Array[]) {
  return (len?: number): Uint8Array => {
    const next = chunks.shift();
    if (!next) throw new Error('scripted RNG exhausted');
    if (next.length !== len) throw new Error(`scripted RNG: asked for ${len} bytes, have ${next.length}`);
    return next;
  };
}
