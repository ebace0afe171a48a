// Command auditverify is the independent verifier of registry-core's audit log tests.
//
// It checks a log directory with Go's own transparency-log code (golang.org/x/mod/sumdb/note
// and sumdb/tlog, Debian's golang-golang-x-mod-dev): the checkpoint's Ed25519 signature
// (note.Open with the verifier keys given; keys Go does not know, such as the ML-DSA-65 one,
// are skipped and their signature lines ignored, as the signed-note spec requires), the root
// of the C2SP tiles (tlog.TileHashReader authenticates every tile it reads against that
// root), every entry's record hash and inclusion proof, and the consistency proof from every
// size given. It prints what it computed so the test can compare it with registry-core.
//
// usage: auditverify DIR VKEYFILE [OLD_SIZE...]
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return 8 }

// indexPath spells a tile index as C2SP tlog-tiles does: 3-digit groups, all but the last
// prefixed with "x".
func indexPath(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

func tilePath(kind string, n int64, w int) string {
	p := "tile/" + kind + "/" + indexPath(n)
	if w != 256 {
		p += ".p/" + strconv.Itoa(w)
	}
	return p
}

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(d.dir, tilePath(strconv.Itoa(t.L), t.N, t.W)))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "auditverify: "+format+"\n", args...)
	os.Exit(1)
}

func hexProof(p []tlog.Hash) string {
	parts := make([]string, len(p))
	for i, h := range p {
		parts[i] = hex.EncodeToString(h[:])
	}
	return strings.Join(parts, ",")
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: auditverify DIR VKEYFILE [OLD_SIZE...]")
	}
	dir := os.Args[1]
	keyText, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	var verifiers []note.Verifier
	for _, line := range strings.Split(string(keyText), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := note.NewVerifier(line)
		if err != nil {
			continue // not a key type Go knows (the ML-DSA-65 one)
		}
		verifiers = append(verifiers, v)
	}
	if len(verifiers) == 0 {
		fail("no Ed25519 verifier key in %s", os.Args[2])
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		fail("checkpoint: too few lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("checkpoint: bad size %q", lines[1])
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint: bad root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	fmt.Printf("signatures %d unverified %d\n", len(n.Sigs), len(n.UnverifiedSigs))
	fmt.Printf("origin %s\nsize %d\nroot %s\n", lines[0], size, hex.EncodeToString(root[:]))

	hr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, dirTiles{dir})
	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash: %v", err)
	}
	if th != root {
		fail("the tiles hash to %s, the checkpoint says %s", th, root)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for b := int64(0); b*256 < size; b++ {
		w := int(size - b*256)
		if w > 256 {
			w = 256
		}
		data, err := os.ReadFile(filepath.Join(dir, tilePath("entries", b, w)))
		if err != nil {
			fail("%v", err)
		}
		for i := 0; i < w; i++ {
			if len(data) < 2 {
				fail("bundle %d: truncated", b)
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("bundle %d: truncated entry", b)
			}
			entry := data[2 : 2+l]
			data = data[2+l:]
			index := b*256 + int64(i)
			leaf := tlog.RecordHash(entry)
			proof, err := tlog.ProveRecord(size, index, hr)
			if err != nil {
				fail("entry %d: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, size, root, index, leaf); err != nil {
				fail("entry %d: %v", index, err)
			}
			fmt.Fprintf(out, "incl %d %s\n", index, hexProof(proof))
		}
		if len(data) != 0 {
			fail("bundle %d: trailing bytes", b)
		}
	}
	for _, arg := range os.Args[3:] {
		old, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || old < 1 || old > size {
			fail("bad old size %q", arg)
		}
		oldHash, err := tlog.TreeHash(old, hr)
		if err != nil {
			fail("tree hash %d: %v", old, err)
		}
		p, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			fail("consistency %d: %v", old, err)
		}
		if err := tlog.CheckTree(p, size, root, old, oldHash); err != nil {
			fail("consistency %d: %v", old, err)
		}
		fmt.Fprintf(out, "cons %d %s %s\n", old, hex.EncodeToString(oldHash[:]), hexProof(p))
	}
	fmt.Fprintln(out, "ok")
}
