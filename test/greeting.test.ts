import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import { GreetingWatch, parseReplyLine, type LineSocket as WatchedSocket } from '../lib/greeting'
import { GREETING_EVENT, type GreetingReply } from '../lib/race'

class LineSocket extends EventEmitter implements WatchedSocket {
  paused = 0
  pause(): void {
    this.paused++
  }
}

describe('parseReplyLine', function () {
  it("reads a reply's code and whether it is the last line, as Haraka's own pattern does", function () {
    assert.deepEqual(parseReplyLine('220 mx.test ESMTP\r\n'), {
      code: 220,
      line: '220 mx.test ESMTP',
      final: true,
    })
    assert.deepEqual(parseReplyLine('220-mx.test wait\r\n'), {
      code: 220,
      line: '220-mx.test wait',
      final: false,
    })
    assert.deepEqual(parseReplyLine('421 4.7.0 later\n'), { code: 421, line: '421 4.7.0 later', final: true })
  })

  it('a line without a reply code, or a bare code, is no reply', function () {
    assert.deepEqual(parseReplyLine('SSH-2.0-x\r\n'), { line: 'SSH-2.0-x', final: true })
    assert.deepEqual(parseReplyLine('220\r\n'), { line: '220', final: true })
    assert.deepEqual(parseReplyLine('120 wait\r\n'), { line: '120 wait', final: true })
  })

  it('keeps a hostile line printable and bounded', function () {
    const r = parseReplyLine(`421 a\u0000b\u001b[31m${'x'.repeat(500)}\r\n`)
    assert.equal(r.code, 421)
    assert.ok(r.line.length <= 201, String(r.line.length))
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(r.line, /[\u0000-\u001f]/)
    assert.ok(r.line.startsWith('421 a?b?[31m'))
  })
})

describe('GreetingWatch', function () {
  it('reports the first line once, pauses there, and keeps every line in order', function () {
    const socket = new LineSocket()
    const watch = new GreetingWatch(socket)
    const seen: GreetingReply[] = []
    socket.on(GREETING_EVENT, (r: GreetingReply) => seen.push(r))
    socket.emit('line', '220-mx.test first\r\n')
    assert.deepEqual(seen, [{ code: 220, line: '220-mx.test first' }])
    assert.equal(socket.paused, 1)
    assert.equal(watch.complete, false, 'a 220- line alone is no complete greeting')
    socket.emit('line', '220 mx.test last\r\n')
    assert.equal(seen.length, 1)
    assert.equal(watch.complete, true)
    assert.deepEqual(watch.lines, ['220-mx.test first\r\n', '220 mx.test last\r\n'])
  })

  it('replays the kept lines, as emitted, to listeners attached later, and keeps no more', function () {
    const socket = new LineSocket()
    const watch = new GreetingWatch(socket)
    socket.emit('line', '220-a\r\n')
    socket.emit('line', '220 b\r\n')
    const got: string[] = []
    socket.on('line', (l: string) => got.push(l))
    watch.replay()
    socket.emit('line', '250 later\r\n')
    assert.deepEqual(got, ['220-a\r\n', '220 b\r\n', '250 later\r\n'])
    assert.deepEqual(watch.lines, [])
  })

  it('a refusing greeting is never complete: a loser that refused gets no QUIT', function () {
    const socket = new LineSocket()
    const watch = new GreetingWatch(socket)
    socket.emit('line', '554 go away\r\n')
    assert.equal(watch.complete, false)
  })
})
