package main

// A realistic mixed datastore image for the compression comparison: an
// ext4 file system (mkfs.ext4 -d, no mount needed) holding a SQLite
// database of sensor readings (made with the sqlite3 CLI), JPEG camera
// images (image/jpeg from synthetic scenes with sensor noise), text logs,
// and free space (zeros, as on a fresh card).

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// writeMixed builds the image at path, size bytes: about 20% database,
// 25% JPEG, 15% logs, the rest free.
func writeMixed(path string, size int64) error {
	for _, tool := range []string{"sqlite3", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (apt-get install -y sqlite3 e2fsprogs)", tool)
		}
	}
	root, err := os.MkdirTemp(filepath.Dir(path), "pgbench-mixed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	for _, d := range []string{"db", "camera", "log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	// The database: readings of 37 sensors every 15 s, with notes.
	rows := size / 5 / 60
	sql := fmt.Sprintf(`PRAGMA page_size=4096;
CREATE TABLE readings(id INTEGER PRIMARY KEY, ts TEXT, sensor TEXT, value REAL, note TEXT);
CREATE INDEX readings_ts ON readings(ts);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < %d)
INSERT INTO readings SELECT x, datetime(1764547200 + x*15, 'unixepoch'), 'sensor-' || (x %% 37),
  round(20 + 5*sin(x/500.0) + (abs(random()) %% 100)/100.0, 2),
  CASE WHEN x %% 53 = 0 THEN 'threshold exceeded, alarm raised' WHEN x %% 7 = 0 THEN 'calibrated' ELSE 'ok' END FROM c;
`, rows)
	cmd := exec.Command("sqlite3", filepath.Join(root, "db", "readings.db"))
	cmd.Stdin = strings.NewReader(sql)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sqlite3: %w: %s", err, out)
	}
	// Camera images: 1280x720 scenes (sky, ground, a moving object) with noise.
	r := rand.New(rand.NewPCG(9, 9))
	var jpegBytes int64
	for i := 0; jpegBytes < size/4; i++ {
		img := image.NewRGBA(image.Rect(0, 0, 1280, 720))
		ox, oy := 200+i*37%880, 300+i*13%300
		for y := 0; y < 720; y++ {
			for x := 0; x < 1280; x++ {
				var c color.RGBA
				switch {
				case (x-ox)*(x-ox)+(y-oy)*(y-oy) < 60*60:
					c = color.RGBA{200, 40, 30, 255}
				case y < 300:
					c = color.RGBA{90, uint8(140 + y/6), 230, 255}
				default:
					g := uint8(80 + 40*math.Sin(float64(x)/37+float64(i)))
					c = color.RGBA{60, g, 40, 255}
				}
				n := uint8(r.IntN(24))
				c.R, c.G, c.B = c.R+n, c.G+n, c.B+n
				img.Set(x, y, c)
			}
		}
		f, err := os.Create(filepath.Join(root, "camera", fmt.Sprintf("cam%05d.jpg", i)))
		if err != nil {
			return err
		}
		err = jpeg.Encode(f, img, &jpeg.Options{Quality: 85})
		st, _ := f.Stat()
		f.Close()
		if err != nil {
			return err
		}
		jpegBytes += st.Size()
	}
	// Logs: an application and a system log.
	for k, name := range []string{"app.log", "syslog"} {
		f, err := os.Create(filepath.Join(root, "log", name))
		if err != nil {
			return err
		}
		w := bufio.NewWriter(f)
		var n int64
		for i := 0; n < size*3/20/2; i++ {
			c, _ := fmt.Fprintf(w, "2026-12-%02d %02d:%02d:%02d.%03d unit-%d %s[%d]: %s id=%d took %dms\n",
				1+i/86400%28, i/3600%24, i/60%60, i%60, r.IntN(1000), k, []string{"recorder", "uploader", "kernel"}[i%3],
				1000+i%50, []string{"frame stored", "upload done", "link up", "sensor read", "retrying"}[r.IntN(5)], i, r.IntN(900))
			n += int64(c)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		f.Close()
	}
	os.Remove(path)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,nodiscard",
		"-d", root, path, fmt.Sprintf("%dk", size>>10)).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	return nil
}
