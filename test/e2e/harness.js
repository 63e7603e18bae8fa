'use strict'

// The loopback support module (support/) under its old name, for the unit tests that still
// require it from here; new code requires support/ itself.

module.exports = require('../../support')
