'use strict'

const assert = require('node:assert/strict')

const { median, medianInterval } = require('../support/text')

/** P(Binomial(n, ½) < k), summed the plain way. */
function below(n, k) {
  let sum = 0
  for (let i = 0; i < k; i++) {
    let c = 1
    for (let j = 0; j < i; j++) c = (c * (n - j)) / (j + 1)
    sum += c / 2 ** n
  }
  return sum
}

describe('support/text medianInterval', function () {
  it('takes the ranks of the sign test: 3rd and 9th of 11 runs, 7th and 15th of 21', function () {
    const runs = (n) => Array.from({ length: n }, (_, i) => 10 + i)
    assert.deepEqual(medianInterval(runs(11)), { low: 12, high: 18, coverage: 1 - (2 * 67) / 2048 })
    const r21 = medianInterval(runs(21))
    assert.equal(r21.low, 16)
    assert.equal(r21.high, 24)
  })

  it('for every n up to 40, its ranks are the widest that keep each side within (1 − level) / 2', function () {
    for (const level of [0.8, 0.9, 0.95]) {
      for (let n = 1; n <= 40; n++) {
        const r = medianInterval(
          Array.from({ length: n }, (_, i) => i + 1),
          level,
        )
        let k = 0
        while (k + 1 <= n + 1 - (k + 1) && below(n, k + 1) <= (1 - level) / 2) k++
        if (k < 1) {
          assert.equal(r, undefined, `n=${n} level=${level}`)
          continue
        }
        assert.deepEqual([r.low, r.high], [k, n + 1 - k], `n=${n} level=${level}`)
        assert.ok(Math.abs(r.coverage - (1 - 2 * below(n, k))) < 1e-12)
        assert.ok(r.coverage >= level, `n=${n} level=${level}: coverage ${r.coverage}`)
      }
    }
  })

  it('has no interval for fewer than 5 runs at its default level, the one-sided 95 % bounds', function () {
    assert.equal(medianInterval([1, 2, 3, 4]), undefined)
    assert.deepEqual(medianInterval([5, 1, 4, 2, 3]), { low: 1, high: 5, coverage: 1 - 2 / 32 })
  })

  it('sorts what it is given and leaves out values that are no number', function () {
    const values = [1.31, NaN, 1.19, 1.35, Infinity, 1.22, 1.27, 1.37, 1.22, 1.32, 1.35, 1.2, 1.3]
    const r = medianInterval(values)
    assert.deepEqual([r.low, r.high], [1.22, 1.35])
    assert.ok(r.low <= median(values) && median(values) <= r.high)
    assert.equal(values[0], 1.31, 'the input is not reordered')
  })
})
