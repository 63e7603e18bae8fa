import assert from 'node:assert/strict'
import net from 'node:net'

import { probeGreeting } from '../lib/greeting-probe'
import type { RaceTarget } from '../lib/race'

/** A loopback server that runs `greet` on each connection and keeps what the client sent. */
async function server(greet: (socket: net.Socket) => void): Promise<{
  port: number
  received: () => Promise<string>
  close: () => Promise<void>
}> {
  let resolveReceived: (text: string) => void = () => {}
  const received = new Promise<string>((resolve) => (resolveReceived = resolve))
  const sockets = new Set<net.Socket>()
  const srv = net.createServer((socket) => {
    sockets.add(socket)
    let text = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      text += d
      if (text.includes('QUIT\r\n')) socket.end('221 bye\r\n')
    })
    socket.on('error', () => {})
    socket.on('close', () => resolveReceived(text))
    greet(socket)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  return {
    port: (srv.address() as net.AddressInfo).port,
    received: () => received,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => srv.close(() => resolve()))
    },
  }
}

const target = (port: number): RaceTarget => ({
  address: '127.0.0.1',
  family: 'ipv4',
  exchange: 'mx.probe.test',
  preference: 10,
  port,
})

describe('greeting-probe', () => {
  it('after a 220 greeting sends QUIT and nothing else, then closes', async () => {
    const s = await server((socket) => socket.write('220 mx.probe.test ESMTP\r\n'))
    try {
      const result = await probeGreeting(target(s.port), 2_000)
      assert.equal(result.attempts[0].outcome, 'connected')
      assert.equal(result.attempts[0].greeting, '220 mx.probe.test ESMTP')
      assert.equal(await s.received(), 'QUIT\r\n')
    } finally {
      await s.close()
    }
  })

  it('waits for the last line of a multi-line greeting sent in pieces before its QUIT', async () => {
    const s = await server((socket) => {
      socket.write('220-mx.probe.test first\r\n')
      setTimeout(() => socket.write('220-second\r\n'), 30)
      setTimeout(() => socket.write('220 last\r\n'), 60)
    })
    try {
      const result = await probeGreeting(target(s.port), 2_000)
      assert.equal(result.attempts[0].outcome, 'connected')
      assert.equal(await s.received(), 'QUIT\r\n')
    } finally {
      await s.close()
    }
  })

  it('a refusing greeting fails the probe, and nothing is sent', async () => {
    const s = await server((socket) => socket.write('421 4.7.0 try later\r\n'))
    try {
      const result = await probeGreeting(target(s.port), 2_000)
      assert.equal(result.attempts[0].outcome, 'failed')
      assert.equal(result.attempts[0].error, 'greeting 421 4.7.0 try later')
      assert.equal(await s.received(), '')
    } finally {
      await s.close()
    }
  })

  it('a silent server is left at the timeout without a word', async () => {
    const s = await server(() => {})
    try {
      const result = await probeGreeting(target(s.port), 200)
      const [a] = result.attempts
      assert.equal(a.greeting, undefined)
      assert.equal(await s.received(), '')
    } finally {
      await s.close()
    }
  })

  it('a closed port fails with ECONNREFUSED', async () => {
    const s = await server(() => {})
    const { port } = s
    await s.close()
    const result = await probeGreeting(target(port), 2_000)
    assert.equal(result.attempts[0].outcome, 'failed')
    assert.equal(result.attempts[0].code, 'ECONNREFUSED')
  })
})
