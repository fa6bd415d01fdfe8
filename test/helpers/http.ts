/** JSON over real HTTP, for tests that talk to spawned example-server processes. */

/** A reply: its status, parsed JSON body and `policy-revision` header. */
export interface Answer { status: number, body: any, revision: string | undefined }

/** Sends `body` (if any) as JSON and parses the JSON reply; gives up after `timeoutMs`. */
export async function request (method: 'GET' | 'POST', url: string, body?: object, timeoutMs = 15000): Promise<Answer> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? undefined : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs)
  })
  return { status: res.status, body: await res.json(), revision: res.headers.get('policy-revision') ?? undefined }
}
