'use strict'

// Undo lists for the bench and the demo: everything a run starts is registered with a scope
// and stopped in reverse order, also on Ctrl-C, a closed stdout or an uncaught error.

const openScopes = new Set()

/**
 * A list of undo steps run in reverse order by close(), each one even if an earlier one
 * throws. Open scopes are also closed when the process gets SIGINT or SIGTERM.
 */
function makeScope(name = 'scope') {
  const steps = []
  let closing = null
  const scope = {
    name,
    /** Registers fn to run on close() and returns `value` (handy inline). */
    defer(fn, value) {
      steps.push(fn)
      return value
    },
    /**
     * Awaits something started (a sink, a black hole, a Haraka, the DNS) and registers its
     * close() or stop() with the scope.
     * @template {{close?: () => Promise<void>, stop?: () => Promise<void>}} T
     * @param {Promise<T>} starting
     * @returns {Promise<T>}
     */
    async own(starting) {
      const thing = await starting
      steps.push(() => (thing.stop ? thing.stop() : thing.close()))
      return thing
    },
    close() {
      if (!closing) {
        closing = (async () => {
          while (steps.length) {
            const step = steps.pop()
            try {
              await step()
            } catch (err) {
              console.error(`${name}: cleanup step failed: ${err && err.message}`)
            }
          }
          openScopes.delete(scope)
        })()
      }
      return closing
    },
  }
  openScopes.add(scope)
  return scope
}

let handlersInstalled = false

/**
 * On SIGINT/SIGTERM, an uncaught error, or a closed stdout (`| head`): close every open scope
 * (stops Haraka, sinks, black holes, removes temp dirs), then exit. Without this, a Haraka
 * child would outlive its parent.
 */
function closeScopesOnExit() {
  if (handlersInstalled) return
  handlersInstalled = true
  let stopping = false
  const stopAll = (why, code) => {
    if (stopping) return
    stopping = true
    try {
      process.stderr.write(`\n${why}: stopping everything this run started ...\n`)
    } catch {
      // stderr may be gone as well
    }
    // A hard stop if a cleanup step hangs; Haraka's own stop() escalates to SIGKILL after 5 s.
    setTimeout(() => process.exit(code), 15000).unref()
    Promise.allSettled([...openScopes].map((s) => s.close())).then(() => process.exit(code))
  }
  process.on('SIGINT', () => stopAll('SIGINT', 130))
  process.on('SIGTERM', () => stopAll('SIGTERM', 143))
  process.on('SIGHUP', () => stopAll('SIGHUP', 129))
  process.on('uncaughtException', (err) => stopAll(`uncaught error: ${err && err.stack}`, 1))
  process.on('unhandledRejection', (err) => stopAll(`unhandled rejection: ${err && err.stack}`, 1))
  process.stdout.on('error', (err) => stopAll(`stdout: ${err.code || err.message}`, 1))
}

module.exports = { makeScope, closeScopesOnExit }
