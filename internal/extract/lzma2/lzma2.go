// Package lzma2 decodes an LZMA2 chunk sequence (the payload of an xz
// block) into a buffer that holds the whole decoded output.
//
// It exists for speed. A streaming decoder keeps a circular dictionary,
// reads its input through io.ByteReader and copies out what it decodes;
// here the output buffer is the dictionary, the input is a string indexed
// directly, and nothing is copied twice. The algorithm follows the LZMA
// specification and xz-embedded's single-call mode (public domain).
//
// It does not check integrity beyond the format: callers hash the output
// (the extractor checks SHA-256) and fall back to
// github.com/ulikunitz/xz, the reference decoder here, on any error.
package lzma2

import "errors"

// ErrData reports malformed input.
var ErrData = errors.New("lzma2: corrupt data")

const (
	numStates     = 12
	posStatesMax  = 1 << 4
	lenLowSymbols = 8
	lenMidSymbols = 8
	lenHigh       = 256
	distStates    = 4
	distSlots     = 64
	distModelEnd  = 14
	fullDistances = 128
	alignBits     = 4
	alignSize     = 1 << alignBits
	matchLenMin   = 2
	probInit      = 1 << 10
	topValue      = 1 << 24
	literalCoder  = 0x300
)

type prob = uint16

type lenDec struct {
	choice  prob
	choice2 prob
	low     [posStatesMax][lenLowSymbols]prob
	mid     [posStatesMax][lenMidSymbols]prob
	high    [lenHigh]prob
}

// decoder is the LZMA state carried between the chunks of one sequence.
type decoder struct {
	// Range decoder over the current chunk.
	in   string
	ip   int // may pass len(in) on corrupt input; then the chunk fails
	rng  uint32
	code uint32

	// Output: out[base:pos] is what the dictionary has seen since its
	// last reset, of which the last dictCap bytes are reachable.
	out     []byte
	base    int
	pos     int
	dictCap int

	lc, lp, pb uint32
	state      uint32
	rep0, rep1 uint32
	rep2, rep3 uint32

	isMatch    [numStates][posStatesMax]prob
	isRep      [numStates]prob
	isRep0     [numStates]prob
	isRep1     [numStates]prob
	isRep2     [numStates]prob
	isRep0Long [numStates][posStatesMax]prob
	distSlot   [distStates][distSlots]prob
	distSpec   [fullDistances - distModelEnd]prob
	distAlign  [alignSize]prob
	matchLen   lenDec
	repLen     lenDec
	literal    [literalCoder << 4]prob // lc+lp <= 4 in LZMA2
}

// Decode decodes the LZMA2 chunk sequence in into out, which must be
// exactly the decoded length. The sequence must end with its end marker,
// the last byte of in. dictCap is the dictionary size: no match reaches
// further back than dictCap bytes.
func Decode(out []byte, in string, dictCap int) error {
	d := &decoder{out: out, dictCap: dictCap}
	needDictReset, needProps := true, true
	i := 0
	for {
		if i >= len(in) {
			return ErrData
		}
		c := in[i]
		i++
		if c == 0x00 {
			if d.pos != len(out) || i != len(in) {
				return ErrData
			}
			return nil
		}
		if c >= 0xe0 || c == 0x01 {
			needProps = true
			needDictReset = false
			d.base = d.pos // dictionary reset: nothing before here is reachable
		} else if needDictReset {
			return ErrData
		}
		if c < 0x80 {
			// Uncompressed chunk.
			if c > 0x02 || i+2 > len(in) {
				return ErrData
			}
			n := int(in[i])<<8 | int(in[i+1]) + 1
			i += 2
			if i+n > len(in) || d.pos+n > len(out) {
				return ErrData
			}
			copy(out[d.pos:], in[i:i+n])
			d.pos += n
			i += n
			continue
		}
		if i+4 > len(in) {
			return ErrData
		}
		unpacked := int(c&0x1f)<<16 | int(in[i])<<8 | int(in[i+1]) + 1
		packed := int(in[i+2])<<8 | int(in[i+3]) + 1
		i += 4
		switch {
		case c >= 0xc0:
			if i >= len(in) || !d.setProps(in[i]) {
				return ErrData
			}
			i++
			needProps = false
			d.reset()
		case needProps:
			return ErrData
		case c >= 0xa0:
			d.reset()
		}
		if i+packed > len(in) || d.pos+unpacked > len(out) {
			return ErrData
		}
		if err := d.chunk(in[i:i+packed], d.pos+unpacked); err != nil {
			return err
		}
		i += packed
	}
}

// setProps sets lc, lp and pb from the properties byte.
func (d *decoder) setProps(b byte) bool {
	if b > (4*5+4)*9+8 {
		return false
	}
	d.lc = uint32(b % 9)
	b /= 9
	d.lp = uint32(b % 5)
	d.pb = uint32(b / 5)
	return d.lc+d.lp <= 4 && d.pb <= 4
}

// reset resets the state and all probabilities.
func (d *decoder) reset() {
	d.state, d.rep0, d.rep1, d.rep2, d.rep3 = 0, 0, 0, 0, 0
	fill := func(p []prob) {
		for i := range p {
			p[i] = probInit
		}
	}
	for i := range d.isMatch {
		fill(d.isMatch[i][:])
		fill(d.isRep0Long[i][:])
	}
	fill(d.isRep[:])
	fill(d.isRep0[:])
	fill(d.isRep1[:])
	fill(d.isRep2[:])
	for i := range d.distSlot {
		fill(d.distSlot[i][:])
	}
	fill(d.distSpec[:])
	fill(d.distAlign[:])
	for _, l := range []*lenDec{&d.matchLen, &d.repLen} {
		l.choice, l.choice2 = probInit, probInit
		for i := range l.low {
			fill(l.low[i][:])
			fill(l.mid[i][:])
		}
		fill(l.high[:])
	}
	fill(d.literal[:literalCoder<<(d.lc+d.lp)])
}

// chunk decodes one LZMA chunk, in, until the output reaches end.
func (d *decoder) chunk(in string, end int) error {
	if len(in) < 5 || in[0] != 0 {
		return ErrData
	}
	d.in, d.ip = in, 5
	d.rng = 0xffffffff
	d.code = uint32(in[1])<<24 | uint32(in[2])<<16 | uint32(in[3])<<8 | uint32(in[4])
	out := d.out
	pbMask := uint32(1)<<d.pb - 1
	lpMask := uint32(1)<<d.lp - 1
	for d.pos < end {
		pos := uint32(d.pos - d.base)
		posState := pos & pbMask
		if d.bit(&d.isMatch[d.state][posState]) == 0 {
			// Literal.
			prev := uint32(0)
			if d.pos > d.base {
				prev = uint32(out[d.pos-1])
			}
			probs := d.literal[literalCoder*(((pos&lpMask)<<d.lc)+prev>>(8-d.lc)):][:literalCoder]
			// The literal loops are the hot path (most of a kernel
			// image is literals): the range decoder is inlined by hand,
			// with its state in locals.
			sym := uint32(1)
			rng, code, ip, in := d.rng, d.code, d.ip, d.in
			if d.state < 7 {
				for sym < 0x100 {
					if rng < topValue {
						rng <<= 8
						code <<= 8
						if ip < len(in) {
							code |= uint32(in[ip])
						}
						ip++
					}
					// Branch-free: literal bits of packed data
					// are coin flips, and mispredicted branches
					// cost more than the arithmetic.
					p := &probs[sym]
					v := uint32(*p)
					bound := (rng >> 11) * v
					mask := uint32((uint64(code)-uint64(bound))>>63) - 1 // bit 1: all ones
					rng = bound&^mask | (rng-bound)&mask
					code -= bound & mask
					*p = prob(v + (1<<11-v)>>5&^mask - v>>5&mask)
					sym = sym<<1 | mask&1
				}
			} else {
				if !d.reachable(d.rep0) {
					return ErrData
				}
				match := uint32(out[d.pos-int(d.rep0)-1]) << 1
				offset := uint32(0x100)
				for sym < 0x100 {
					matchBit := match & offset
					match <<= 1
					if rng < topValue {
						rng <<= 8
						code <<= 8
						if ip < len(in) {
							code |= uint32(in[ip])
						}
						ip++
					}
					p := &probs[offset+matchBit+sym]
					v := uint32(*p)
					bound := (rng >> 11) * v
					mask := uint32((uint64(code)-uint64(bound))>>63) - 1
					rng = bound&^mask | (rng-bound)&mask
					code -= bound & mask
					*p = prob(v + (1<<11-v)>>5&^mask - v>>5&mask)
					sym = sym<<1 | mask&1
					// bit 0: offset &^= matchBit; bit 1: offset = matchBit
					offset = offset&^matchBit&^mask | matchBit&mask
				}
			}
			d.rng, d.code, d.ip = rng, code, ip
			out[d.pos] = byte(sym)
			d.pos++
			switch {
			case d.state < 4:
				d.state = 0
			case d.state < 10:
				d.state -= 3
			default:
				d.state -= 6
			}
			continue
		}
		var n uint32
		if d.bit(&d.isRep[d.state]) != 0 {
			// A repeated distance.
			if d.bit(&d.isRep0[d.state]) == 0 {
				if d.bit(&d.isRep0Long[d.state][posState]) == 0 {
					// Short rep: one byte at rep0.
					if d.state < 7 {
						d.state = 9
					} else {
						d.state = 11
					}
					if !d.reachable(d.rep0) {
						return ErrData
					}
					out[d.pos] = out[d.pos-int(d.rep0)-1]
					d.pos++
					continue
				}
			} else {
				var dist uint32
				if d.bit(&d.isRep1[d.state]) == 0 {
					dist = d.rep1
				} else {
					if d.bit(&d.isRep2[d.state]) == 0 {
						dist = d.rep2
					} else {
						dist = d.rep3
						d.rep3 = d.rep2
					}
					d.rep2 = d.rep1
				}
				d.rep1 = d.rep0
				d.rep0 = dist
			}
			if d.state < 7 {
				d.state = 8
			} else {
				d.state = 11
			}
			n = d.length(&d.repLen, posState)
		} else {
			// A match with a new distance.
			if d.state < 7 {
				d.state = 7
			} else {
				d.state = 10
			}
			d.rep3, d.rep2, d.rep1 = d.rep2, d.rep1, d.rep0
			n = d.length(&d.matchLen, posState)
			ds := n - matchLenMin
			if ds > distStates-1 {
				ds = distStates - 1
			}
			slot := d.tree(d.distSlot[ds][:], distSlots) - distSlots
			if slot < 4 {
				d.rep0 = slot
			} else {
				limit := slot>>1 - 1
				d.rep0 = (2 | slot&1) << limit
				if slot < distModelEnd {
					d.rep0 += d.reverse(d.distSpec[:], int(d.rep0)-int(slot)-1, limit)
				} else {
					d.rep0 += d.direct(limit-alignBits) << alignBits
					d.rep0 += d.reverse(d.distAlign[:], 0, alignBits)
				}
			}
		}
		// Copy n bytes from rep0+1 back; the match must fit in the
		// dictionary and in this chunk.
		if !d.reachable(d.rep0) || int(n) > end-d.pos {
			return ErrData
		}
		dist := int(d.rep0) + 1
		src := d.pos - dist
		if dist >= int(n) {
			copy(out[d.pos:d.pos+int(n)], out[src:src+int(n)])
		} else {
			for k := range int(n) {
				out[d.pos+k] = out[src+k]
			}
		}
		d.pos += int(n)
	}
	// The chunk must end exactly: all input used, the coder finished
	// (normalized once more, as the encoder did after the last bit).
	if d.rng < topValue {
		d.normalize()
	}
	if d.ip != len(d.in) || d.code != 0 || d.pos != end {
		return ErrData
	}
	return nil
}

// reachable reports whether the byte rep0+1 back is in the dictionary:
// written since the last dictionary reset, and at most dictCap back.
func (d *decoder) reachable(rep0 uint32) bool {
	dist := int64(rep0) + 1
	return dist <= int64(d.pos-d.base) && dist <= int64(d.dictCap)
}

// bit decodes one bit with the probability p.
func (d *decoder) bit(p *prob) uint32 {
	if d.rng < topValue {
		d.normalize()
	}
	bound := (d.rng >> 11) * uint32(*p)
	if d.code < bound {
		d.rng = bound
		*p += (1<<11 - *p) >> 5
		return 0
	}
	d.rng -= bound
	d.code -= bound
	*p -= *p >> 5
	return 1
}

// normalize shifts in the next input byte.
func (d *decoder) normalize() {
	d.rng <<= 8
	d.code <<= 8
	if d.ip < len(d.in) {
		d.code |= uint32(d.in[d.ip])
	}
	d.ip++ // past the end: the chunk-end check fails
}

// tree decodes a bit tree of limit leaves.
func (d *decoder) tree(probs []prob, limit uint32) uint32 {
	sym := uint32(1)
	for sym < limit {
		sym = sym<<1 | d.bit(&probs[sym])
	}
	return sym
}

// reverse decodes a reverse bit tree of n bits whose node k has the
// probability probs[base+k] (base may be -1: node 0 is never used).
func (d *decoder) reverse(probs []prob, base int, n uint32) uint32 {
	sym, res := uint32(1), uint32(0)
	for i := range n {
		b := d.bit(&probs[base+int(sym)])
		sym = sym<<1 | b
		res |= b << i
	}
	return res
}

// direct decodes n bits of equal probability.
func (d *decoder) direct(n uint32) uint32 {
	var res uint32
	for ; n > 0; n-- {
		if d.rng < topValue {
			d.normalize()
		}
		d.rng >>= 1
		d.code -= d.rng
		mask := 0 - (d.code >> 31)
		d.code += d.rng & mask
		res = res<<1 + mask + 1
	}
	return res
}

// length decodes a match length.
func (d *decoder) length(l *lenDec, posState uint32) uint32 {
	if d.bit(&l.choice) == 0 {
		return matchLenMin + d.tree(l.low[posState][:], lenLowSymbols) - lenLowSymbols
	}
	if d.bit(&l.choice2) == 0 {
		return matchLenMin + lenLowSymbols + d.tree(l.mid[posState][:], lenMidSymbols) - lenMidSymbols
	}
	return matchLenMin + lenLowSymbols + lenMidSymbols + d.tree(l.high[:], lenHigh) - lenHigh
}
