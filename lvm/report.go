package lvm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// lvFields are the lvs columns parsed into an LV, in report order.
const lvFields = "lv_name,vg_name,lv_path,lv_size,lv_tags,lv_active,pool_lv,lv_time,lv_uuid"

// timeLayout is lvm's default report/time_format ("%Y-%m-%d %T %z").
const timeLayout = "2006-01-02 15:04:05 -0700"

// report is lvm's JSON report: {"report":[{"lv":[{...}]}]}. Every value is
// a string, numbers included.
type report[T any] struct {
	Report []map[string][]T `json:"report"`
}

func parseReport[T any](out []byte, kind string) ([]T, error) {
	var r report[T]
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("parse lvm %s report: %w", kind, err)
	}
	var rows []T
	for _, part := range r.Report {
		rows = append(rows, part[kind]...)
	}
	return rows, nil
}

type lvRow struct {
	Name   string `json:"lv_name"`
	VG     string `json:"vg_name"`
	Path   string `json:"lv_path"`
	Size   string `json:"lv_size"`
	Tags   string `json:"lv_tags"`
	Active string `json:"lv_active"`
	Pool   string `json:"pool_lv"`
	Time   string `json:"lv_time"`
	UUID   string `json:"lv_uuid"`
}

func (r lvRow) toLV() (LV, error) {
	lv := LV{Name: r.Name, VG: r.VG, Path: r.Path, Active: r.Active == "active", Pool: r.Pool, UUID: r.UUID}
	var err error
	if lv.Size, err = strconv.ParseUint(r.Size, 10, 64); err != nil {
		return LV{}, fmt.Errorf("lv %s/%s: bad lv_size %q: %w", r.VG, r.Name, r.Size, err)
	}
	for _, t := range strings.Split(r.Tags, ",") {
		if t != "" {
			lv.Tags = append(lv.Tags, t)
		}
	}
	if r.Time != "" {
		if lv.Created, err = time.Parse(timeLayout, r.Time); err != nil {
			return LV{}, fmt.Errorf("lv %s/%s: bad lv_time %q: %w", r.VG, r.Name, r.Time, err)
		}
	}
	return lv, nil
}
