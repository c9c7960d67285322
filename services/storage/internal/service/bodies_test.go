package service

import "testing"

func TestCountBareLF(t *testing.T) {
	cases := []struct {
		chunks []string
		want   int64
	}{
		{[]string{"a\r\nb\r\n"}, 0},
		{[]string{"a\nb\n"}, 2},
		{[]string{"a\r", "\nb\n"}, 1},
		{[]string{"a\n", "\n"}, 2},
		{[]string{"\r\r\n\n"}, 1},
	}
	for _, c := range cases {
		var n int64
		prevCR := false
		for _, ch := range c.chunks {
			n += countBareLF([]byte(ch), prevCR)
			prevCR = ch[len(ch)-1] == '\r'
		}
		if n != c.want {
			t.Errorf("%q: %d bare LFs, want %d", c.chunks, n, c.want)
		}
	}
}
