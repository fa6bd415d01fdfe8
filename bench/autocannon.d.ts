/** The part of autocannon's API the HTTP section uses (the package ships no types). */
declare module 'autocannon' {
  interface Options {
    url: string
    connections?: number
    pipelining?: number
    duration?: number
  }
  interface Histogram { average: number, p50: number, p99: number, total: number }
  interface Result {
    requests: Histogram
    latency: Histogram
    duration: number
    errors: number
    non2xx: number
  }
  function autocannon (options: Options): Promise<Result>
  export default autocannon
}
