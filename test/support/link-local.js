'use strict'

// What a TCP connect() to a link-local address without a zone (fe80::…, no `%eth0`) does on
// the running Node and this host, so that tests can state which behaviour they check.
//
// Linux refuses such a connect with EINVAL, before any packet, while the socket address has
// scope id 0. libuv 1.47.0 (commit e893cd6, "unix: set ipv6 scope id for link-local
// addresses") fills in the scope id of the first interface that has a link-local address:
// Node 20 ships libuv 1.46 and keeps failing at once; Node 22, 24 and 26 ship libuv 1.47 or
// later and, where an interface has a link-local address (every real host's network card
// does), send the SYN out of it, where nobody answers: the connect waits for its timeout.
// A network namespace with only loopback has no such interface, so there every Node fails at
// once. libuv matches only the fe80::/16 prefix.

const os = require('node:os')

const SCOPE_FILLING_LIBUV = [1, 47, 0]

function versionAtLeast(version, min) {
  const parts = String(version).split('.').map(Number)
  for (let i = 0; i < min.length; i++) {
    const p = parts[i] || 0
    if (p !== min[i]) return p > min[i]
  }
  return true
}

/** Interfaces in the order libuv walks them, with their addresses. */
function interfaceList(interfaces = os.networkInterfaces()) {
  return Object.entries(interfaces).map(([name, addrs]) => ({ name, addrs: addrs || [] }))
}

const isFe80 = (a) => a.family === 'IPv6' && /^fe80:/i.test(a.address)
const isLinkLocal = (a) =>
  a.family === 'IPv6' ? /^fe[89ab][0-9a-f]:/i.test(a.address) : /^169\.254\./.test(a.address)

/**
 * @param {{uv?: string, interfaces?: ReturnType<typeof os.networkInterfaces>}} [env]
 * @returns {{fails: boolean, via: string | null, label: string, reason: string,
 *   offMachine: string | null}}
 *   fails: the connect errors with EINVAL at once; otherwise it waits (SYN sent via `via`).
 *   offMachine: where that SYN could leave this machine (an interface with an address beyond
 *   loopback and link-local), or null when nothing routes off the host or nothing is sent.
 */
function zonelessLinkLocalConnect({ uv = process.versions.uv, interfaces } = {}) {
  const list = interfaceList(interfaces)
  if (!versionAtLeast(uv, SCOPE_FILLING_LIBUV)) {
    return {
      fails: true,
      via: null,
      label: 'fails with EINVAL at once',
      reason: `libuv ${uv} is older than 1.47 and leaves scope id 0, which the kernel refuses`,
      offMachine: null,
    }
  }
  const via = list.find((i) => i.addrs.some(isFe80))
  if (!via) {
    return {
      fails: true,
      via: null,
      label: 'fails with EINVAL at once',
      reason: `libuv ${uv} would borrow the scope of an interface with a link-local address; there is none`,
      offMachine: null,
    }
  }
  const routed = list.flatMap((i) =>
    i.addrs.filter((a) => !a.internal && !isLinkLocal(a)).map((a) => `${i.name} ${a.address}`),
  )
  return {
    fails: false,
    via: via.name,
    label: `is sent out of ${via.name} and hangs unanswered`,
    reason: `libuv ${uv} borrows the scope of ${via.name}, which has a link-local address`,
    offMachine: routed.length ? routed.join(', ') : null,
  }
}

/**
 * Throws, before any connect is made, when the zoneless fe80:: connect would send a SYN on a
 * network beyond this host: the tests talk to loopback only.
 */
function assertZonelessLinkLocalStaysHere(behaviour = zonelessLinkLocalConnect()) {
  if (behaviour.offMachine) {
    throw new Error(
      `a connect to fe80:: without a zone would go out of ${behaviour.via} (${behaviour.reason}), and this ` +
        `host has addresses beyond loopback and link-local (${behaviour.offMachine}): run the tests in a ` +
        `network namespace of their own, as .ci/run does`,
    )
  }
}

module.exports = { zonelessLinkLocalConnect, assertZonelessLinkLocalStaysHere }
