'use strict'

// The DNS shapes the tests, the bench and the demo deliver to, in one place.

/**
 * The seed report's link-local AAAA. A connect() to it fails with EINVAL before any packet on
 * Node 20, and on Node 22+ goes out of an interface with a link-local address, if there is
 * one, and waits for its timeout (test/support/link-local.js).
 */
const LINK_LOCAL = 'fe80::d250:99ff:feda:9100'

/** The seed case: a link-local AAAA in front of a working A. */
const SEED_RECORDS = { aaaa: [LINK_LOCAL], a: ['127.0.0.1'] }
/** A black-holed (or, with a sink there, healthy) ::1 in front of a working A. */
const DUAL_RECORDS = { aaaa: ['::1'], a: ['127.0.0.1'] }
/** Only a working A. */
const V4_RECORDS = { a: ['127.0.0.1'] }

/**
 * An MX list zone: mx([10, 'mx1.example'], [20, 'mx2.example']).
 * @param {...[number, string]} hosts
 */
const mx = (...hosts) => ({ mx: hosts.map(([preference, exchange]) => ({ preference, exchange })) })

/**
 * `domain` with one MX host, `mx.<domain>`, holding `records` (aaaa, a).
 * @param {string} domain
 * @param {{aaaa?: string[], a?: string[]}} records
 * @returns {Object<string, object>}
 */
function oneMx(domain, records) {
  return { [domain]: mx([10, `mx.${domain}`]), [`mx.${domain}`]: { ...records } }
}

module.exports = { LINK_LOCAL, SEED_RECORDS, DUAL_RECORDS, V4_RECORDS, mx, oneMx }
