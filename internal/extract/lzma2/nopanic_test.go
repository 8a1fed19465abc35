package lzma2

import (
	"math/rand/v2"
	"testing"
)

// TestNoPanic feeds random and damaged input with random output lengths:
// errors are fine, panics and hangs are not.
func TestNoPanic(t *testing.T) {
	valid := []byte(compress(t, sample(20000), "preset=6"))
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 5000; i++ {
		var in []byte
		switch r.IntN(3) {
		case 0:
			in = make([]byte, r.IntN(200))
			for k := range in {
				in[k] = byte(r.Uint32())
			}
		default:
			in = append([]byte(nil), valid[:r.IntN(len(valid)+1)]...)
			for range r.IntN(5) {
				if len(in) > 0 {
					in[r.IntN(len(in))] = byte(r.Uint32())
				}
			}
		}
		n := r.IntN(70000)
		Decode(make([]byte, n), string(in), 1+r.IntN(anyDict))
	}
}
