import { test } from 'tap'
import { retryAfterMs } from '../../lib/broadcast/retry-after.js'

test('Retry-After: delay-seconds or an HTTP-date, capped; anything else ignored', async (t) => {
  const now = Date.parse('Sun, 29 Nov 2026 18:00:00 GMT')
  t.equal(retryAfterMs('2', now, 60000), 2000)
  t.equal(retryAfterMs(' 0 ', now, 60000), 0)
  t.equal(retryAfterMs('Sun, 29 Nov 2026 18:00:05 GMT', now, 60000), 5000)
  t.equal(retryAfterMs('Sun, 29 Nov 2026 17:00:00 GMT', now, 60000), 0, 'a past date means now')
  t.equal(retryAfterMs('Sunday, 29-Nov-26 18:00:07 GMT', now, 60000), 7000, 'the obsolete RFC 850 form')
  t.equal(retryAfterMs('3600', now, 30000), 30000, 'capped')
  t.equal(retryAfterMs(['3', '9'], now, 60000), 3000, 'the first of repeated headers')
  t.equal(retryAfterMs(undefined, now, 60000), undefined)
  t.equal(retryAfterMs('', now, 60000), undefined)
  t.equal(retryAfterMs('soon', now, 60000), undefined)
  t.equal(retryAfterMs('-5', now, 60000), undefined)
})
