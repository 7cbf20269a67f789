// Command loadgen sends HTTP requests read from stdin with a fixed number of concurrent
// keep-alive clients and prints what it measured as one JSON object. It is the load side of
// benchmarks/bench_serve.py: a compiled client takes a small share of the two cores the
// server under test also runs on, so the figures are the server's, not a Python client's.
//
// Input: one JSON object per line, {"method": "GET", "url": "http://...", "body": "..."}.
// The first `-warmup` requests of each client are sent before the clock starts (after all
// clients connected) and not counted. Every response must be a 200 whose body is JSON, or
// loadgen exits 1 naming the request.
//
//	loadgen -clients 8 < requests.jsonl
//	{"requests": 800, "seconds": 3.91, "rate": 204.6, "p50_ms": 36.1, "p95_ms": 61.0}
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type request struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Body   string `json:"body"`
}

type result struct {
	Requests int     `json:"requests"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
}

func main() {
	clients := flag.Int("clients", 8, "concurrent clients, each with its own keep-alive connection")
	warmup := flag.Int("warmup", 1, "requests per client sent before the clock starts")
	timeout := flag.Duration("timeout", 30*time.Second, "limit of one request")
	flag.Parse()

	var requests []request
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		var r request
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
			fail("stdin line %d: %v", len(requests)+1, err)
		}
		requests = append(requests, r)
	}
	if err := scanner.Err(); err != nil {
		fail("stdin: %v", err)
	}
	if *clients < 1 || len(requests) < *clients*(*warmup+1) {
		fail("%d requests are too few for %d clients with %d warm-up requests each", len(requests), *clients, *warmup)
	}

	// each client owns one connection: a transport of its own with one idle connection
	shares := make([][]request, *clients)
	for k, r := range requests {
		shares[k%*clients] = append(shares[k%*clients], r)
	}
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	latencies := make([][]time.Duration, *clients)
	for k := range shares {
		ready.Add(1)
		done.Add(1)
		go func(k int) {
			defer done.Done()
			client := &http.Client{Timeout: *timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			for _, r := range shares[k][:*warmup] {
				send(client, r)
			}
			ready.Done()
			<-start
			for _, r := range shares[k][*warmup:] {
				t := time.Now()
				send(client, r)
				latencies[k] = append(latencies[k], time.Since(t))
			}
		}(k)
	}
	ready.Wait()
	t := time.Now()
	close(start)
	done.Wait()
	wall := time.Since(t)

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	out := result{Requests: len(all), Seconds: wall.Seconds(), Rate: float64(len(all)) / wall.Seconds(),
		P50: ms(quantile(all, 0.50)), P95: ms(quantile(all, 0.95))}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("stdout: %v", err)
	}
}

func send(client *http.Client, r request) {
	var body io.Reader
	if r.Body != "" {
		body = bytes.NewReader([]byte(r.Body))
	}
	req, err := http.NewRequest(r.Method, r.URL, body)
	if err != nil {
		fail("%s %s: %v", r.Method, r.URL, err)
	}
	if r.Body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		fail("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		fail("%s %s: reading the body: %v", r.Method, r.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		fail("%s %s: %d %.300s", r.Method, r.URL, resp.StatusCode, data)
	}
	if !json.Valid(data) {
		fail("%s %s: the body is not JSON: %.300s", r.Method, r.URL, data)
	}
}

// quantile is the inclusive (linear interpolation) quantile of sorted durations, as
// Python's statistics.quantiles(method="inclusive") computes it.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 1 {
		return sorted[0]
	}
	pos := q * float64(len(sorted)-1)
	lo := int(pos)
	if lo+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[lo+1]-sorted[lo]))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}
