'use strict'

// Loopback support for the end-to-end tests, the bench and the demo: real Haraka processes, a
// DNS server, SMTP sinks and black holes, all on 127.0.0.0/8 and ::1. One concern a file:
//   haraka.js      Haraka processes, submission, outcomes by uuid, the queue dir
//   deliver.js     one message timed from submission to the sink
//   outcomes.js    the recorder plugin and its JSON lines (what happened, as data)
//   package.js     the plugin packed and installed the way a user installs it
//   dns.js         the test DNS server;  zones.js  the DNS shapes delivered to
//   sinks.js       recording SMTP sinks, silent servers;  black-hole.js  connects that hang
//   redis.js       a throwaway redis-server, stopped and started again for outages
//   tls.js         throwaway certificates;  ports.js  free and busy ports
//   log.js         the one Haraka log follower;  clock.js  waits, polling, seeded random
//   proc.js        /proc readers;  scope.js  undo lists;  text.js  numbers and tables
//   no-ipv6-host.js  one message through Haraka in a namespace without IPv6, DNS queries logged

module.exports = {
  ...require('./clock'),
  ...require('./ports'),
  ...require('./tls'),
  ...require('./sinks'),
  ...require('./black-hole'),
  ...require('./redis'),
  ...require('./dns'),
  ...require('./zones'),
  ...require('./outcomes'),
  ...require('./package'),
  ...require('./haraka'),
  ...require('./deliver'),
  ...require('./log'),
  ...require('./proc'),
  ...require('./scope'),
  ...require('./text'),
  ...require('./no-ipv6-host'),
}
