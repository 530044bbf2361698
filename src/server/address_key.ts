// Owns the key a remote address is limited under: IPv4 as is, IPv6 by its network prefix.

/**
 * The key per-address limits count a remote address under.
 *
 * - IPv6 is cut to its first `prefixBits` bits (0-128) and written in RFC 5952 form with the
 *   length: `2001:db8:1:2:3:4:5:6` at 64 → `2001:db8:1:2::/64`. One subscriber usually holds a
 *   whole /64, so keying the full address would give an attacker 2^64 fresh buckets. At 128 the
 *   address itself is the key, without `/128`.
 * - A zone (`fe80::1%eth0`) is dropped; an IPv4-mapped address (`::ffff:192.0.2.1`) is its IPv4.
 * - IPv4 and anything that is not an IPv6 address (e.g. `unix`) are returned unchanged.
 */
export function addressKey(addr: string, prefixBits: number): string {
  const groups = parseIPv6(addr);
  if (!groups) return addr;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6] >> 8}.${groups[6] & 255}.${groups[7] >> 8}.${groups[7] & 255}`;
  }
  const bits = Math.max(0, Math.min(128, Math.floor(prefixBits)));
  const masked = groups.map((g, i) => {
    const keep = Math.max(0, Math.min(16, bits - i * 16));
    return keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
  return bits === 128 ? formatIPv6(masked) : `${formatIPv6(masked)}/${bits}`;
}

/** The eight 16-bit groups of an IPv6 address, or null when `text` is not one. */
function parseIPv6(text: string): number[] | null {
  const s = text.includes("%") ? text.slice(0, text.indexOf("%")) : text;
  if (!s.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(s)) return null;
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const part = (p: string): number[] | null => {
    if (p === "") return [];
    const out: number[] = [];
    const fields = p.split(":");
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      if (i === fields.length - 1 && f.includes(".")) {
        const v4 = f.split(".");
        if (v4.length !== 4 || !v4.every((o) => /^\d{1,3}$/.test(o) && Number(o) <= 255)) {
          return null;
        }
        const [a, b, c, d] = v4.map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(f)) {
        out.push(parseInt(f, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = part(halves[0]);
  const tail = halves.length === 2 ? part(halves[1]) : [];
  if (!head || !tail) return null;
  if (halves.length === 1) return head.length === 8 ? head : null;
  const fill = 8 - head.length - tail.length;
  return fill >= 1 ? [...head, ...new Array(fill).fill(0), ...tail] : null;
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as `::`. */
function formatIPv6(groups: number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
