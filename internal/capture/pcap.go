// Package capture reads packets off an interface (AF_PACKET, from inside
// the interface's namespace), writes them as pcap, filters them, and says
// in one line what each one is.
package capture

import (
	"bufio"
	"encoding/binary"
	"io"
	"time"
)

// Snaplen is the most of one packet that is kept: a whole GSO frame.
const Snaplen = 262144

// linktypeEthernet is LINKTYPE_ETHERNET in pcap's link types.
const linktypeEthernet = 1

// Writer writes the classic pcap format (microsecond timestamps), which
// Wireshark, tcpdump and every pcap library read.
type Writer struct {
	w *bufio.Writer
	// Stream flushes after every packet (`-w -` into a pipe: the reader
	// sees each packet when it is captured).
	Stream bool
}

// NewWriter writes the file header.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := &Writer{w: bufio.NewWriterSize(w, 64<<10)}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], Snaplen)
	binary.LittleEndian.PutUint32(h[20:], linktypeEthernet)
	if _, err := pw.w.Write(h[:]); err != nil {
		return nil, err
	}
	return pw, pw.flushIfStream()
}

// Write adds one packet: data as captured (at most Snaplen bytes), length
// as it was on the wire.
func (pw *Writer) Write(ts time.Time, data []byte, length int) error {
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(ts.Unix()))
	binary.LittleEndian.PutUint32(h[4:], uint32(ts.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(h[12:], uint32(length))
	if _, err := pw.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := pw.w.Write(data); err != nil {
		return err
	}
	return pw.flushIfStream()
}

func (pw *Writer) flushIfStream() error {
	if pw.Stream {
		return pw.w.Flush()
	}
	return nil
}

// Flush writes out what is buffered.
func (pw *Writer) Flush() error { return pw.w.Flush() }
