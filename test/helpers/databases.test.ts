/**
 * A database test that cannot reach its server: outside CI a skip that says which server and how to
 * start it; under CI=true a failure, so that a CI run never passes without the database suites.
 */
import { test, type Test } from 'tap'
import { unreachable } from './databases.js'

/** What `unreachable` reports, recorded instead of sent to tap. */
function recorder () {
  const calls: Array<[string, string]> = []
  const t = { fail: (message: string) => calls.push(['fail', message]), skip: (message: string) => calls.push(['skip', message]) }
  return { calls, t: t as unknown as Test }
}

test('an unreachable database server is a skip naming it and how to start it, and a failure under CI=true', async (t) => {
  const ci = process.env.CI
  t.teardown(() => { if (ci === undefined) delete process.env.CI; else process.env.CI = ci })

  delete process.env.CI
  const local = recorder()
  unreachable(local.t, 'PostgreSQL', 'postgres://postgres@127.0.0.1:5432/test')
  unreachable(local.t, 'MySQL', 'mysql://root@127.0.0.1:3306/test')
  t.match(local.calls, [
    ['skip', /^PostgreSQL not reachable at 127\.0\.0\.1:5432: SKIPPED\. .*pg_ctlcluster.*TEST_POSTGRES_URL/],
    ['skip', /^MySQL not reachable at 127\.0\.0\.1:3306: SKIPPED\. .*mariadbd.*TEST_MYSQL_URL/]
  ])

  process.env.CI = 'true'
  const onCi = recorder()
  unreachable(onCi.t, 'PostgreSQL', 'postgres://postgres@127.0.0.1:5432/test')
  t.same(onCi.calls, [['fail', 'PostgreSQL not reachable at 127.0.0.1:5432, and CI=true requires it']])
})
