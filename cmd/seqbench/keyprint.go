package main

import (
	"hash/maphash"
	"sync"
)

// keyPrint is an order-independent fingerprint of (sha, key) pairs: the sum of a
// hash of each pair, and their number. A strategy that knows the keys it wrote adds
// each pair; verification adds the pairs it reads from the table; the two agree when
// every commit has the key the strategy reported, in constant memory. It is safe for
// concurrent use.
type keyPrint struct {
	mu  sync.Mutex
	sum uint64
	n   int
}

var keyPrintSeed = maphash.MakeSeed()

func keyPairHash(sha string, key int64) uint64 {
	var h maphash.Hash
	h.SetSeed(keyPrintSeed)
	h.WriteString(sha)
	var b [8]byte
	for i := range b {
		b[i] = byte(key >> (8 * i))
	}
	h.Write(b[:])
	return h.Sum64()
}

func (p *keyPrint) add(sha string, key int64) {
	h := keyPairHash(sha, key)
	p.mu.Lock()
	p.sum += h
	p.n++
	p.mu.Unlock()
}

func (p *keyPrint) equal(o *keyPrint) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	return p.sum == o.sum && p.n == o.n
}
