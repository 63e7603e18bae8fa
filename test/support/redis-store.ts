// A RedisStore on a test redis-server on loopback, as the plugin makes one (without redis.ini).

import {
  createRedisClient,
  describeEndpoint,
  redisClientOptions,
  RedisStore,
  type RedisStoreOptions,
} from '../../lib/redis-store'

/** A started store on 127.0.0.1:port, database 0; the caller closes it. */
export function openTestStore(port: number, over: Partial<RedisStoreOptions> = {}): RedisStore {
  const options = redisClientOptions({ host: '127.0.0.1', port, db: 0 }, {}, 100)
  return new RedisStore(createRedisClient(options), {
    timeoutMs: 500,
    maxPending: 100,
    endpoint: describeEndpoint(options),
    log: () => {},
    ...over,
  }).start()
}
