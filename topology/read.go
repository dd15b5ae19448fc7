package topology

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxFileSize bounds the size of a topology file Load reads (the CLI's
// --max-file-size). A file over it is refused before it is parsed.
var MaxFileSize int64 = 64 << 20

// ReadFile reads a topology file: a regular file (a FIFO, device or
// directory is refused without blocking on it) of at most max bytes.
func ReadFile(path string, max int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO with no writer must not hang.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read topology: %s is %s, not a regular file", path, fileType(st.Mode()))
	}
	if st.Size() > max {
		return nil, fmt.Errorf("read topology: %s is %d bytes, over the limit of %d (--max-file-size)", path, st.Size(), max)
	}
	// Into a buffer of the size Stat gave, with the room ReadFrom wants
	// to see the end: io.ReadAll's doubling would hold up to twice a big
	// file's size.
	buf := bytes.NewBuffer(make([]byte, 0, st.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, max+1)); err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	data := buf.Bytes()
	if int64(len(data)) > max {
		return nil, fmt.Errorf("read topology: %s grew past the limit of %d bytes (--max-file-size) while being read", path, max)
	}
	return data, nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}
