package console

import (
	"bytes"
	"io"
	"sync"
	"unicode/utf8"
)

// Wrapper is an io.Writer for a raw-mode terminal: it ends lines with CR LF
// and breaks lines longer than its width, at the last space when there is
// one. It holds back an unfinished line until a newline, the width or Flush.
// It is safe for concurrent use.
type Wrapper struct {
	mu    sync.Mutex
	w     io.Writer
	width int
	line  []byte // the current, unfinished line
	cols  int    // its width in columns
	err   error
}

// NewWrapper returns a Wrapper writing to w, width columns wide.
func NewWrapper(w io.Writer, width int) *Wrapper {
	return &Wrapper{w: w, width: width}
}

// Write implements io.Writer. Tabs advance to the next multiple of 8
// columns; CR is dropped (every line break becomes CR LF).
func (w *Wrapper) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		c := p[:size]
		p = p[size:]
		switch r {
		case '\r':
			continue
		case '\n':
			w.emit(w.line)
			continue
		case '\t':
			pad := 8 - w.cols%8
			if w.cols+pad > w.width {
				w.emit(w.line)
				continue
			}
			w.line = append(w.line, bytes.Repeat([]byte{' '}, pad)...)
			w.cols += pad
			continue
		}
		if w.cols == w.width {
			w.breakLine()
		}
		w.line = append(w.line, c...)
		w.cols++
	}
	if w.err != nil {
		return 0, w.err
	}
	return n, nil
}

// breakLine ends a full line: at its last space if it has one (the rest
// moves to the next line), else where it stands.
func (w *Wrapper) breakLine() {
	i := bytes.LastIndexByte(w.line, ' ')
	if i <= 0 {
		w.emit(w.line)
		return
	}
	rest := append([]byte(nil), w.line[i+1:]...)
	w.emit(bytes.TrimRight(w.line[:i], " "))
	w.line = append(w.line, rest...)
	w.cols = utf8.RuneCount(rest)
}

// emit writes s and CR LF and starts a new line.
func (w *Wrapper) emit(s []byte) {
	if w.err == nil {
		out := append(append([]byte(nil), s...), '\r', '\n')
		_, w.err = w.w.Write(out)
	}
	w.line, w.cols = w.line[:0], 0
}

// Flush writes an unfinished line, ended with CR LF.
func (w *Wrapper) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) > 0 {
		w.emit(w.line)
	}
	return w.err
}
