// "Did you mean …?" for unknown field names: a small edit distance (with transpositions) over the
// handful of names a section accepts. Pure; no configuration knowledge here.

/**
 * Optimal-string-alignment distance between `a` and `b`: insertions, deletions, substitutions and
 * swaps of two neighbouring characters each cost one. Case-insensitive.
 */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  // Three rows suffice: the transposition step looks two rows back.
  let prev2 = new Array<number>(t.length + 1).fill(0);
  let prev = Array.from({ length: t.length + 1 }, (_, j) => j);
  let cur = new Array<number>(t.length + 1).fill(0);
  for (let i = 1; i <= s.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= t.length; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) d = Math.min(d, prev2[j - 2]! + 1);
      cur[j] = d;
    }
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return prev[t.length]!;
}

/**
 * The candidate closest to `name`, if one is close enough to be what was meant: at most a third of
 * the candidate's length away (and at least 2 edits allowed), or `name` is a prefix of it or it of
 * `name` (`timeout` for `timeoutMs`). Ties go to the earlier candidate.
 */
export function suggest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = name.toLowerCase();
  for (const c of candidates) {
    const cl = c.toLowerCase();
    const prefix = lower.length >= 3 && (cl.startsWith(lower) || lower.startsWith(cl));
    const d = editDistance(name, c);
    const limit = Math.max(2, Math.floor(c.length / 3));
    if ((d <= limit || prefix) && d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}
