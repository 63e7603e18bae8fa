'use strict'

// Numbers and plain-text tables for what the bench and the demo print.

/** The median of the finite values, NaN when there is none. */
function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (!v.length) return NaN
  const mid = Math.floor(v.length / 2)
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2
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

module.exports = { median, fmtMs, fmtDuration, fmtInt, columns, mdTable }
