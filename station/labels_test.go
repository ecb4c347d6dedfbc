package station_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// printer is a ZPL printer on ln: it sends what one connection brought.
func printer(ln net.Listener) <-chan []byte {
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		data, _ := io.ReadAll(c)
		c.Close()
		got <- data
	}()
	return got
}

// A passed board's label reaches a ZPL printer on raw TCP byte for byte.
func TestLabelPrinted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := printer(ln)
	l := newLine(t)
	if l.printer, err = labels.NewPrinter(labels.PrinterConfig{ZPL: ln.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, "ZT-LABEL", board.TPMNone)
	st := l.station(t, station.ModeSymmetricKey, b)
	res, err := st.Provision(context.Background(), station.SlotConfig{Name: "slot-1"}, b.Path())
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	want, err := station.LabelFor(res.Record, time.Now()).ZPL()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case data := <-got:
		if string(data) != want {
			t.Errorf("the printer got %q, want the label's ZPL %q", data, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no label reached the printer")
	}
	last := l.events[len(l.events)-1]
	if last.Result != station.Passed || last.Label != l.printer.String() || last.LabelError != "" {
		t.Errorf("the passed event %+v does not say where the label went", last)
	}
}

// A printer that refuses leaves the board passed, says so to the operator
// and keeps the record from which the label is printed again.
func TestLabelPrinterRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	l := newLine(t)
	if l.printer, err = labels.NewPrinter(labels.PrinterConfig{ZPL: addr, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, "ZT-NOLABEL", board.TPMNone)
	st := l.station(t, station.ModeSymmetricKey, b)
	if _, err := st.Provision(context.Background(), station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
		t.Fatalf("Provision with the printer off = %v, want the board passed", err)
	}
	last := l.events[len(l.events)-1]
	if last.Result != station.Passed || last.Label != "" || !strings.Contains(last.LabelError, addr) ||
		!strings.Contains(last.Message, "LABEL WAS NOT PRINTED") || !strings.Contains(last.Message, "zerotouch records label ZT-NOLABEL") {
		t.Errorf("the passed event %+v does not tell the operator the label was not printed", last)
	}
	rec, err := l.store.Get(context.Background(), "ZT-NOLABEL")
	if err != nil || rec.Result != records.ResultPassed {
		t.Fatalf("record %+v, %v: want passed", rec, err)
	}
	if _, err := st.PrintLabel(context.Background(), rec); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("PrintLabel with the printer still off = %v, want its refusal", err)
	}
	// The printer comes back: the label is printed again from the record.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the printer's port was taken meanwhile: %v", err)
	}
	defer ln.Close()
	got := printer(ln)
	if where, err := st.PrintLabel(context.Background(), rec); err != nil || where != l.printer.String() {
		t.Fatalf("PrintLabel = %q, %v", where, err)
	}
	want, _ := station.LabelFor(rec, rec.UpdatedAt).ZPL()
	if data := <-got; string(data) != want {
		t.Errorf("the label printed again is %q, want %q", data, want)
	}
	rec.Result = records.ResultFailed
	if _, err := st.PrintLabel(context.Background(), rec); !errors.Is(err, station.ErrNotPassed) {
		t.Errorf("PrintLabel of a failed board = %v, want ErrNotPassed", err)
	}
}

// A printer that takes the connection but not the label keeps the slot
// reporting what it waits for until the print times out.
func TestLabelPrinterStalls(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(10 * time.Second) // neither reads to the end nor closes
		}
	}()
	l := newLine(t)
	if l.printer, err = labels.NewPrinter(labels.PrinterConfig{ZPL: ln.Addr().String(), Timeout: 2500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, "ZT-STALL", board.TPMNone)
	st := l.station(t, station.ModeSymmetricKey, b)
	if _, err := st.Provision(context.Background(), station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	l.mu.Lock()
	events := append([]station.Event(nil), l.events...)
	l.mu.Unlock()
	waited, longest := false, time.Duration(0)
	for i, e := range events {
		if strings.Contains(e.Waiting, "label printer") {
			waited = true
		}
		if i > 0 && e.Time.Sub(events[i-1].Time) > longest {
			longest = e.Time.Sub(events[i-1].Time)
		}
	}
	last := events[len(events)-1]
	if !waited || last.Result != station.Passed || last.LabelError == "" {
		t.Errorf("waited for the printer %v; last event %+v; want the wait reported and the label's failure", waited, last)
	}
	if longest > 2*time.Second {
		t.Errorf("%v without an event while the printer stalled", longest)
	}
}
