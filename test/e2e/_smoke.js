const h = require('/work/main/test/e2e/harness.js')
const fixtures = require('haraka-test-fixtures')
;(async () => {
  const dns = await fixtures.dns.start({
    'seed.test': { mx: [{ preference: 10, exchange: 'mx.seed.test' }] },
    'mx.seed.test': { aaaa: ['fe80::d250:99ff:feda:9100'], a: ['127.0.0.1'] },
  })
  const version = process.argv[2]
  const sink = await h.startSink({ port: 25 })
  const t0 = Date.now()
  const haraka = await h.startHaraka({ version, dnsPort: dns.port, outbound: JSON.parse(process.argv[3] || '{}') })
  console.log('started in', Date.now() - t0)
  try {
    const from = haraka.logLength()
    const info = await h.sendMail({ port: haraka.port, to: 'rcpt@seed.test' })
    console.log('sent', info.response)
    const o = await h.waitForOutcome(haraka, 40000, { from })
    console.log(o)
    await new Promise(r => setTimeout(r, 500))
    console.log('sink', sink.connections, sink.messages.length)
  } catch (e) { console.log('ERR', e.message) }
  console.log(haraka.log())
  await haraka.stop(); await sink.close(); await dns.close()
  console.log('total', Date.now() - t0)
})()
