package ui

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"zerotouch/internal/atomicfile"
	"zerotouch/internal/textsafe"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// PageSize is how many records the Records tab shows at a time.
const PageSize = 50

// recordsView is the Records tab's state. The store is read on a
// goroutine of its own; each answer is shown only if it answers the
// latest question (gen), so a slow answer never overwrites a newer one.
type recordsView struct {
	filter  records.Filter
	cursors []string        // the cursor of each page up to the one shown, "" first
	next    string          // the cursor of the page after the one shown
	gen     int             // counts the pages asked for
	shown   int             // counts the records asked to be shown
	record  *records.Record // the record shown, for Print label
}

func (w *Window) buildRecords() fyne.CanvasObject {
	w.Search = widget.NewEntry()
	w.Search.SetPlaceHolder("serial or registration ID (scan a label, or type; Enter)")
	w.Search.OnSubmitted = func(string) { w.search() }
	w.Detail = widget.NewLabel("")
	w.Detail.Wrapping = fyne.TextWrapBreak
	w.Results = widget.NewList(
		func() int { return len(w.found) },
		func() fyne.CanvasObject {
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(w.found) {
				return
			}
			r := w.found[i]
			o.(*widget.Label).SetText(textsafe.Escape(fmt.Sprintf("%s  %s  %s  %s", r.Serial, r.ResultText(), orDash(r.UploadText()), r.RegistrationID)))
		})
	w.Results.OnSelected = func(i widget.ListItemID) {
		if i < len(w.found) {
			w.showRecord(w.found[i])
		}
	}
	w.Export = widget.NewButton("Export CSV", w.export)
	w.PrintLabel = widget.NewButton("Print label", w.printLabel)
	w.PrintLabel.Disable()
	w.Previous = widget.NewButton("Previous", w.previousPage)
	w.Next = widget.NewButton("Next", w.nextPage)
	w.Previous.Disable()
	w.Next.Disable()
	w.PageText = widget.NewLabel("")
	find := widget.NewButton("Search", w.search)
	bar := container.NewBorder(nil, nil, nil, container.NewHBox(find, w.Export), w.Search)
	pager := container.NewBorder(nil, nil, w.Previous, w.Next, w.PageText)
	detail := container.NewBorder(container.NewHBox(w.PrintLabel), nil, nil, nil, container.NewVScroll(w.Detail))
	split := container.NewHSplit(container.NewBorder(nil, pager, nil, nil, w.Results), detail)
	split.Offset = 0.45
	return container.NewBorder(bar, nil, nil, nil, split)
}

// query is the search text, or the serial number of a scanned label.
func (w *Window) query() string {
	q := strings.TrimSpace(w.Search.Text)
	if serial, _, err := labels.ParsePayload(q); err == nil {
		return serial
	}
	return q
}

// search lists the first page of the records whose serial or
// registration ID contains the search text; a scanned label searches its
// serial number.
func (w *Window) search() {
	w.loadPage(records.Filter{Search: w.query()}, []string{""})
}

func (w *Window) nextPage() {
	if w.recs.next == "" {
		return
	}
	w.loadPage(w.recs.filter, append(w.recs.cursors, w.recs.next))
}

func (w *Window) previousPage() {
	if len(w.recs.cursors) < 2 {
		return
	}
	w.loadPage(w.recs.filter, w.recs.cursors[:len(w.recs.cursors)-1])
}

// loadPage asks the store for the page of f at the last of cursors, on a
// goroutine, and shows it when it comes.
func (w *Window) loadPage(f records.Filter, cursors []string) {
	w.recs.gen++
	gen, cursor := w.recs.gen, cursors[len(cursors)-1]
	cursors = append([]string(nil), cursors...)
	w.PageText.SetText("reading the records...")
	w.Next.Disable()
	w.Previous.Disable()
	go func() {
		p, err := w.b.Records.Page(context.Background(), f, cursor, PageSize)
		w.do(func() {
			if gen != w.recs.gen {
				return // a newer question was asked
			}
			w.showPage(f, cursors, p, err)
		})
	}()
}

// showPage shows the page of f at the last of cursors. On an error the
// page shown, its search and its cursors stay: Next and Previous page
// what is shown.
func (w *Window) showPage(f records.Filter, cursors []string, p records.Page, err error) {
	if err != nil {
		w.PageText.SetText("")
		w.Detail.SetText("cannot read the records: " + err.Error())
		if len(w.recs.cursors) > 1 {
			w.Previous.Enable()
		}
		if w.recs.next != "" {
			w.Next.Enable()
		}
		return
	}
	w.recs.filter, w.recs.cursors, w.recs.next = f, cursors, p.Next
	w.found = p.Records
	w.recs.shown++ // a record being read is no longer wanted
	w.Results.UnselectAll()
	w.Results.Refresh()
	w.Results.ScrollToTop()
	first := (len(cursors)-1)*PageSize + 1
	switch {
	case len(p.Records) == 0 && len(cursors) == 1:
		w.PageText.SetText("no records")
	case len(p.Records) == 0:
		w.PageText.SetText("no more records")
	default:
		w.PageText.SetText(fmt.Sprintf("records %d to %d", first, first+len(p.Records)-1))
	}
	if p.Next != "" {
		w.Next.Enable()
	}
	if len(cursors) > 1 {
		w.Previous.Enable()
	}
	switch {
	case len(p.Records) == 0 && f.Search != "":
		w.Detail.SetText("no record matches " + textsafe.Escape(f.Search))
	case len(p.Records) == 0:
		w.Detail.SetText("no records yet")
	case len(p.Records) == 1 && len(cursors) == 1:
		w.Results.Select(0)
	case f.Search != "":
		w.Detail.SetText(fmt.Sprintf("records matching %s: choose one to see it", textsafe.Escape(f.Search)))
	default:
		w.Detail.SetText("choose a record to see it")
	}
}

// showRecord shows a record, and its audit trail when the store answers.
func (w *Window) showRecord(r records.Record) {
	w.recs.shown++
	shown := w.recs.shown
	w.recs.record = &r
	if _, ok := w.b.Station.(labelPrinter); ok && r.Result == records.ResultPassed {
		w.PrintLabel.Enable()
	} else {
		w.PrintLabel.Disable()
	}
	text := recordText(&r)
	w.Detail.SetText(text + "\nAudit trail: reading...")
	go func() {
		audit, err := w.b.Records.Audit(context.Background(), r.Serial)
		var b strings.Builder
		b.WriteString(text)
		if err != nil {
			fmt.Fprintf(&b, "\nAudit trail: cannot read it: %v\n", err)
		} else {
			b.WriteString("\nAudit trail:\n")
			for _, a := range audit {
				fmt.Fprintf(&b, "%s  %s  %s %s\n", a.Time.Local().Format("2006-01-02 15:04:05"), a.Event,
					textsafe.Escape(a.Detail), textsafe.Escape(a.Operator))
			}
		}
		w.do(func() {
			if shown == w.recs.shown {
				w.Detail.SetText(b.String())
			}
		})
	}()
}

// recordText is a record for the operator, the engineer's cause included.
func recordText(r *records.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Board %s (%s, hw %s, firmware %s)\n", textsafe.Escape(r.Serial), orDash(textsafe.Escape(r.Model)),
		orDash(textsafe.Escape(r.HW)), orDash(textsafe.Escape(r.Firmware)))
	fmt.Fprintf(&b, "Result: %s %s\n", r.ResultText(), textsafe.Escape(r.Message))
	if r.FailedStep != "" || r.Cause != "" {
		fmt.Fprintf(&b, "Failed at step %s: %s\n", orDash(r.FailedStep), orDash(textsafe.Escape(r.Cause)))
	}
	fmt.Fprintf(&b, "Attestation: %s\nRegistration ID: %s\nDevice ID: %s\n", r.Attestation, orDash(r.RegistrationID), orDash(r.DeviceID))
	if r.EKFingerprint != "" {
		fmt.Fprintf(&b, "EK: %s (certificate: %s)\n", r.EKFingerprint, orDash(r.EKCertStatus))
	}
	if r.CertSerial != "" {
		fmt.Fprintf(&b, "Certificate: serial %s, valid until %s\n", r.CertSerial, r.CertNotAfter.Format(time.DateOnly))
	}
	fmt.Fprintf(&b, "Configuration: %s, sha256 %x\n", orDash(r.ConfigPath), r.ConfigSHA256)
	fmt.Fprintf(&b, "Enrollment: %s %s\n", orDash(r.UploadText()), r.UploadError)
	if reg := r.Registration; reg != nil {
		fmt.Fprintf(&b, "Registration with DPS: %s %s %s\n", reg.State, orDash(reg.AssignedHub), reg.Error)
	}
	fmt.Fprintf(&b, "Station %s, line %s, slot %s, operator %s, work order %s\n", orDash(r.Station), orDash(r.Line),
		orDash(r.Slot), orDash(textsafe.Escape(r.Operator)), orDash(textsafe.Escape(r.WorkOrder)))
	return b.String()
}

// export writes, on a goroutine, the per-board enrollments of the records
// the search finds (all, when nothing was searched) as CSV beside the
// records database. When there is none to write (a line whose boards
// enroll through the DPS enrollment group, or no passed board found), it
// writes no file and says so.
func (w *Window) export() {
	q := w.query()
	w.Export.Disable()
	w.Detail.SetText("exporting...")
	name := fmt.Sprintf("%s-export-%s.csv", strings.TrimSuffix(w.b.Config.Records, ".db"), w.b.Now().Format("20060102-150405"))
	group := w.b.Config.Attestation == station.ModeSymmetricKey
	go func() {
		var buf bytes.Buffer
		n, err := w.b.Records.Export(context.Background(), &buf, records.FormatCSV, records.Filter{Search: q})
		if err == nil && n > 0 {
			err = atomicfile.Write(name, buf.Bytes(), 0o600)
		}
		w.do(func() {
			w.Export.Enable()
			switch {
			case err != nil:
				w.Detail.SetText("export failed: " + err.Error())
			case n == 0 && group:
				w.Detail.SetText("nothing exported: this line's boards enroll through the DPS enrollment group, so there is no per-board enrollment to upload")
			case n == 0:
				w.Detail.SetText("nothing exported: no passed board with an individual enrollment matches")
			default:
				w.Detail.SetText(fmt.Sprintf("exported %d enrollments to %s (zerotouch upload --from takes it)", n, name))
			}
		})
	}()
}

// labelPrinter is the station's reprint of a recorded board's label.
type labelPrinter interface {
	PrintLabel(ctx context.Context, rec *records.Record) (string, error)
}

// printLabel prints the shown record's label again, off Fyne's
// goroutine, and says where it went or why it did not.
func (w *Window) printLabel() {
	p, ok := w.b.Station.(labelPrinter)
	r := w.recs.record
	if !ok || r == nil {
		return
	}
	w.PrintLabel.Disable()
	w.PrintLabel.SetText("Printing...")
	go func() {
		where, err := p.PrintLabel(context.Background(), r)
		w.do(func() {
			w.PrintLabel.SetText("Print label")
			w.PrintLabel.Enable()
			if err != nil {
				w.PageText.SetText("label of " + textsafe.Escape(r.Serial) + " NOT printed: " + err.Error() + ": check the printer and press Print label again")
				return
			}
			w.PageText.SetText("label of " + textsafe.Escape(r.Serial) + " printed to " + where)
		})
	}()
}
