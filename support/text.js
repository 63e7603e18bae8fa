'use strict'

// Numbers and plain-text tables for what the bench and the demo print.

/** The median of the finite values, NaN when there is none. */
function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return NaN
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

/**
 * A distribution-free interval for the median of independent runs (the sign test's order
 * statistics): the sorted values of ranks k and n + 1 − k, k the largest rank that leaves each
 * side at most (1 − level) / 2 of the chance, P(Binomial(n, ½) < k). `coverage` is the chance the
 * interval holds the true median; undefined when there are too few values for `level` (under 5 at
 * the default 0.9, whose sides are the one-sided 95 % bounds).
 */
function medianInterval(values, level = 0.9) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const n = v.length
  const side = (1 - level) / 2
  // P(B < k) for B ~ Binomial(n, ½), k = 1, 2, …: the sum of C(n, i) / 2^n over i < k.
  // Ranks k and n + 1 − k may meet (the median itself) but not cross.
  let below = 0
  let choose = 1
  let k = 0
  for (let i = 0; 2 * (i + 1) <= n + 1; i++) {
    const next = below + choose / 2 ** n
    if (next > side) break
    below = next
    k = i + 1
    choose = (choose * (n - i)) / (i + 1)
  }
  if (k < 1) return undefined
  return { low: v[k - 1], high: v[n - k], coverage: 1 - 2 * below }
}

/** A duration for people: 412 ms, 30.41 s. */
function fmtMs(ms) {
  if (!Number.isFinite(ms)) return 'n/a'
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`
}

/** 535.2 s → '8 min 55 s'; shorter spans as fmtMs. */
function fmtDuration(ms) {
  if (!(ms >= 60000)) return fmtMs(ms)
  const s = Math.round(ms / 1000)
  return `${Math.floor(s / 60)} min ${s % 60} s`
}

/** 1 234 567 → '1,234,567' */
function fmtInt(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'
}

/**
 * Aligned plain-text columns. `align` is a string of 'l'/'r' per column.
 * @param {string[][]} rows
 */
function columns(rows, { align = '', indent = '', gap = '  ' } = {}) {
  const widths = []
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] || 0, String(cell).length)))
  return rows
    .map((row) =>
      (
        indent +
        row
          .map((cell, i) => {
            const s = String(cell)
            if (i === row.length - 1 && align[i] !== 'r') return s
            return align[i] === 'r' ? s.padStart(widths[i]) : s.padEnd(widths[i])
          })
          .join(gap)
      ).trimEnd(),
    )
    .join('\n')
}

/** A Markdown table. */
function mdTable(head, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}

module.exports = { median, medianInterval, fmtMs, fmtDuration, fmtInt, columns, mdTable }
