'use strict'

const assert = require('node:assert/strict')

const { procCpuTimesMs } = require('../support/proc')

describe('support/proc procCpuTimesMs', function () {
  it('counts busy JavaScript as user time of the process, not system time', function () {
    const before = procCpuTimesMs(process.pid)
    // About 300 ms of CPU in user space, far above the 10 ms of one clock tick; the clock is
    // read between long stretches of arithmetic, since reading it is a syscall.
    const started = process.cpuUsage()
    let x = 0
    while (process.cpuUsage(started).user < 300_000) for (let i = 0; i < 1e6; i++) x += Math.sqrt(x + i)
    assert.ok(x > 0)
    const after = procCpuTimesMs(process.pid)
    const userMs = after.userMs - before.userMs
    const systemMs = after.systemMs - before.systemMs
    assert.ok(userMs >= 200, `user time grew by ${userMs} ms`)
    assert.ok(systemMs < userMs, `system time grew by ${systemMs} ms, user by ${userMs} ms`)
  })

  it('gives NaN for both parts of a process that cannot exist', function () {
    // Linux's pid_max is at most 2^22.
    const times = procCpuTimesMs(2 ** 22 + 1)
    assert.ok(Number.isNaN(times.userMs) && Number.isNaN(times.systemMs))
  })
})
