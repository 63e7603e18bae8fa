'use strict'

// Waiting and randomness: a set of pending waits poked by whoever learns something new,
// bounded polling, and the plugin's own seeded random source (dist/lib/order.js), so that a
// seed means the same sequence in the plugin, the tests, the soak layout and the bench.

const { seededRandom } = require('../dist/lib/order')

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Calls check() every `everyMs` until it gives something truthy or timeoutMs passes; resolves
 * with its last value either way (the caller decides what a timeout means).
 * @template T
 * @param {() => T | Promise<T>} check
 * @param {number} timeoutMs
 * @param {{everyMs?: number}} [opts]
 * @returns {Promise<T>}
 */
async function pollUntil(check, timeoutMs, { everyMs = 100 } = {}) {
  const end = Date.now() + timeoutMs
  let v = await check()
  while (!v && Date.now() < end) {
    await sleep(everyMs)
    v = await check()
  }
  return v
}

/** Like pollUntil, but rejects naming `what` when the time is up. */
async function waitUntil(check, timeoutMs, what, opts) {
  const v = await pollUntil(check, timeoutMs, opts)
  if (!v) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
  return v
}

/**
 * A set of pending waits: wait(check) resolves with check()'s first truthy value, re-checked on
 * every poke(), or rejects after timeoutMs; failAll() rejects every pending wait.
 */
function makeWaiters() {
  const waiters = new Set()
  const settle = (w, fn, value) => {
    waiters.delete(w)
    clearTimeout(w.timer)
    fn(value)
  }
  return {
    /**
     * @template T
     * @param {() => T} check
     * @param {number} timeoutMs
     * @param {() => string} describe
     * @returns {Promise<T>}
     */
    wait(check, timeoutMs, describe) {
      return new Promise((resolve, reject) => {
        const first = check()
        if (first) return resolve(first)
        const w = { check, resolve, reject, timer: null }
        w.timer = setTimeout(() => {
          waiters.delete(w)
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`))
        }, timeoutMs)
        waiters.add(w)
      })
    },
    poke() {
      for (const w of [...waiters]) {
        let res
        try {
          res = w.check()
        } catch (err) {
          settle(w, w.reject, err)
          continue
        }
        if (res) settle(w, w.resolve, res)
      }
    },
    failAll(err) {
      for (const w of [...waiters]) settle(w, w.reject, err)
    },
  }
}

module.exports = { sleep, pollUntil, waitUntil, makeWaiters, seededRandom }
