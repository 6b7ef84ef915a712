// wfm.core video IO: probe, decode (whole, streaming callback, chunk iterator), encode (whole, incremental),
// PNG/images, and the uint8 <-> model-input conversions. Frames are uint8 torch tensors [T, H, W, 3] (RGB)
// shared with C++ without copies; decoding and encoding release the GIL.
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "wfm/core/video_io.h"
#include "wfm/core/world.h"
#include "wfm_py.h"

namespace wfm::py {
namespace {
namespace py = pybind11;
using GilRelease = py::call_guard<py::gil_scoped_release>;

DecodeOptions MakeDecode(int width, int height, double fps, int64_t start_frame, int64_t num_frames, int threads,
                         std::string hwaccel, bool apply_rotation, int64_t chunk_frames) {
  DecodeOptions o;
  o.width = width;
  o.height = height;
  o.fps = fps;
  o.start_frame = start_frame;
  o.num_frames = num_frames;
  o.threads = threads;
  o.hwaccel = std::move(hwaccel);
  o.apply_rotation = apply_rotation;
  if (chunk_frames <= 0) throw py::value_error("chunk_frames must be positive");
  o.chunk_frames = chunk_frames;
  return o;
}

EncodeOptions MakeEncode(double fps, py::object fps_rational, std::string codec, int crf, std::string preset,
                         int64_t bit_rate, int threads, std::string pix_fmt) {
  EncodeOptions o;
  o.fps = fps;
  if (!fps_rational.is_none()) {
    auto r = fps_rational.cast<std::pair<int64_t, int64_t>>();
    if (r.first <= 0 || r.second <= 0) throw py::value_error("fps_rational must be (num, den) with both > 0");
    o.fps_rational = {r.first, r.second};
  }
  o.codec = std::move(codec);
  o.crf = crf;
  o.preset = std::move(preset);
  o.bit_rate = bit_rate;
  o.threads = threads;
  o.pix_fmt = std::move(pix_fmt);
  return o;
}

// The keyword arguments of every decoding entry point / every encoding entry point.
#define WFM_DECODE_ARGS                                                                                         \
  py::kw_only(), py::arg("width") = 0, py::arg("height") = 0, py::arg("fps") = 0.0, py::arg("start_frame") = 0, \
      py::arg("num_frames") = -1, py::arg("threads") = 0, py::arg("hwaccel") = "",                             \
      py::arg("apply_rotation") = false, py::arg("chunk_frames") = 32
#define WFM_ENCODE_ARGS                                                                                   \
  py::kw_only(), py::arg("fps") = 24.0, py::arg("fps_rational") = py::none(), py::arg("codec") = "libx264", \
      py::arg("crf") = 23, py::arg("preset") = "veryfast", py::arg("bit_rate") = 0, py::arg("threads") = 0,  \
      py::arg("pix_fmt") = "yuv420p"

constexpr const char* kDecodeDoc =
    "Options: width/height (0 keeps the source size; one 0 keeps the aspect ratio), fps (resample by nearest\n"
    "timestamp; 0 = source rate), start_frame/num_frames (in the resampled sequence; -1 = to the end), threads\n"
    "(0 = all cores), hwaccel ('' or 'cuda'), apply_rotation, chunk_frames (frames per chunk when streaming).";

class PyVideoReader {
 public:
  PyVideoReader(const Path& path, DecodeOptions o) : chunk_(o.chunk_frames) {
    py::gil_scoped_release release;
    reader_ = Unwrap(VideoReader::Open(path.value, o));
  }
  at::Tensor Next() {
    at::Tensor t;
    {
      py::gil_scoped_release release;
      t = Unwrap(reader_->Next(chunk_));
    }
    if (!t.defined()) throw py::stop_iteration();
    return t;
  }
  const VideoInfo& info() const { return reader_->info(); }
  int64_t position() const { return reader_->position(); }

 private:
  std::unique_ptr<VideoReader> reader_;
  int64_t chunk_;
};

class PyVideoWriter {
 public:
  PyVideoWriter(const Path& path, int width, int height, EncodeOptions o) {
    py::gil_scoped_release release;
    writer_ = Unwrap(VideoWriter::Open(path.value, width, height, o));
  }
  void Write(const at::Tensor& frames) {
    if (!writer_) throw py::value_error("the video writer is closed");
    py::gil_scoped_release release;
    Check(writer_->Write(frames));
  }
  void Close() {
    if (!writer_) return;
    py::gil_scoped_release release;
    absl::Status s = writer_->Close();
    frames_ = writer_->frames_written();
    writer_.reset();
    Check(s);
  }
  void Abort() { writer_.reset(); }  // the destructor removes the temp file
  int64_t frames_written() const { return writer_ ? writer_->frames_written() : frames_; }

 private:
  std::unique_ptr<VideoWriter> writer_;
  int64_t frames_ = 0;
};

void Bind(py::module_& m) {
  py::class_<VideoInfo>(m, "VideoInfo", "What probe_video found.")
      .def_readonly("path", &VideoInfo::path)
      .def_readonly("container", &VideoInfo::container)
      .def_readonly("codec", &VideoInfo::codec)
      .def_readonly("width", &VideoInfo::width)
      .def_readonly("height", &VideoInfo::height)
      .def_property_readonly("fps", [](const VideoInfo& i) { return i.fps.value(); })
      .def_property_readonly("fps_rational", [](const VideoInfo& i) { return std::make_pair(i.fps.num, i.fps.den); })
      .def_property_readonly("time_base", [](const VideoInfo& i) { return std::make_pair(i.time_base.num, i.time_base.den); })
      .def_readonly("num_frames", &VideoInfo::num_frames)
      .def_readonly("num_frames_exact", &VideoInfo::num_frames_exact)
      .def_readonly("duration_s", &VideoInfo::duration_s)
      .def_readonly("rotation", &VideoInfo::rotation)
      .def_readonly("bit_rate", &VideoInfo::bit_rate)
      .def_readonly("pix_fmt", &VideoInfo::pix_fmt)
      .def(
          "to_dict",
          [](const VideoInfo& i) { return py::module_::import("json").attr("loads")(VideoInfoToJson(i)); },
          "The probe as a dict (the JSON that `wfm info` prints).")
      .def("__repr__", [](const VideoInfo& i) {
        return absl::StrCat("VideoInfo('", i.path, "', ", i.codec, " ", i.width, "x", i.height, ", ", i.fps.num, "/",
                            i.fps.den, " fps, ", i.num_frames, i.num_frames_exact ? "" : "~", " frames)");
      });

  m.def(
      "probe_video", [](const Path& path, bool exact) { return Unwrap(ProbeVideo(path.value, exact)); },
      py::arg("path"), py::arg("exact") = false, GilRelease(),
      "Probes a video: codec, size, fps, frame count (exact=True counts by demuxing/decoding, = ffprobe\n"
      "-count_frames), duration, rotation.");
  m.def(
      "decode_video",
      [](const Path& path, int width, int height, double fps, int64_t start_frame, int64_t num_frames, int threads,
         std::string hwaccel, bool apply_rotation, int64_t chunk_frames) {
        DecodeOptions o = MakeDecode(width, height, fps, start_frame, num_frames, threads, std::move(hwaccel),
                                     apply_rotation, chunk_frames);
        py::gil_scoped_release release;
        return Unwrap(DecodeVideo(path.value, o));
      },
      py::arg("path"), WFM_DECODE_ARGS,
      absl::StrCat("Decodes a video into one uint8 tensor [T, H, W, 3] (RGB).\n", kDecodeDoc).c_str());
  m.def(
      "decode_video_stream",
      [](const Path& path, py::object callback, int width, int height, double fps, int64_t start_frame,
         int64_t num_frames, int threads, std::string hwaccel, bool apply_rotation, int64_t chunk_frames) {
        DecodeOptions o = MakeDecode(width, height, fps, start_frame, num_frames, threads, std::move(hwaccel),
                                     apply_rotation, chunk_frames);
        PyCallback cb(std::move(callback));
        if (!cb) throw py::type_error("callback must be callable");
        bool stopped = false;
        int64_t delivered = 0;
        absl::StatusOr<int64_t> n;
        {
          py::gil_scoped_release release;
          n = DecodeVideoStream(path.value, o, [&](const at::Tensor& chunk, int64_t first) -> absl::Status {
            bool keep_going = true;
            const bool ok = cb.Invoke(
                [&](py::object&& r) { keep_going = r.is_none() || r.cast<bool>(); }, chunk, first);
            if (!ok) return absl::CancelledError("the Python callback raised");
            delivered += chunk.size(0);
            if (!keep_going) {
              stopped = true;
              return absl::CancelledError("stopped by the callback");
            }
            return absl::OkStatus();
          });
        }
        cb.RethrowIfFailed();
        if (stopped) return delivered;
        return Unwrap(std::move(n));
      },
      py::arg("path"), py::arg("callback"), WFM_DECODE_ARGS,
      absl::StrCat("Streams decoded frames through callback(chunk, first_index): chunk is uint8 [t, H, W, 3],\n"
                   "first_index the output index of chunk[0]. Memory stays bounded by chunk_frames. Return False\n"
                   "from the callback to stop; an exception raised in it stops decoding and propagates. Returns the\n"
                   "number of frames delivered.\n",
                   kDecodeDoc)
          .c_str());

  py::class_<PyVideoReader>(m, "VideoReader",
                            "Iterates a video in chunks of up to chunk_frames frames (uint8 [t, H, W, 3]).")
      .def(py::init([](const Path& path, int width, int height, double fps, int64_t start_frame, int64_t num_frames,
                       int threads, std::string hwaccel, bool apply_rotation, int64_t chunk_frames) {
             return std::make_unique<PyVideoReader>(
                 path, MakeDecode(width, height, fps, start_frame, num_frames, threads, std::move(hwaccel),
                                  apply_rotation, chunk_frames));
           }),
           py::arg("path"), WFM_DECODE_ARGS)
      .def_property_readonly("info", &PyVideoReader::info)
      .def_property_readonly("position", &PyVideoReader::position, "output index of the next frame")
      .def("__iter__", [](PyVideoReader& r) -> PyVideoReader& { return r; }, py::return_value_policy::reference)
      .def("__next__", &PyVideoReader::Next);

  m.def(
      "write_video",
      [](const Path& path, const at::Tensor& frames, double fps, py::object fps_rational, std::string codec, int crf,
         std::string preset, int64_t bit_rate, int threads, std::string pix_fmt) {
        EncodeOptions o = MakeEncode(fps, std::move(fps_rational), std::move(codec), crf, std::move(preset), bit_rate,
                                     threads, std::move(pix_fmt));
        py::gil_scoped_release release;
        Check(WriteVideo(path.value, frames, o));
      },
      py::arg("path"), py::arg("frames"), WFM_ENCODE_ARGS,
      "Encodes uint8 [T, H, W, 3] RGB frames (container from the extension: .mp4 .mkv .webm .avi) atomically.\n"
      "codec libx264 (falls back to mpeg4), CRF or bit_rate, preset; fps_rational=(30000, 1001) keeps exact rates.");

  py::class_<PyVideoWriter>(m, "VideoWriter",
                            "Incremental encoder: write() chunks, close() (or leave the `with` block) to finish.\n"
                            "Without close() — or when the `with` block raises — the partial file is discarded.")
      .def(py::init([](const Path& path, int width, int height, double fps, py::object fps_rational, std::string codec,
                       int crf, std::string preset, int64_t bit_rate, int threads, std::string pix_fmt) {
             return std::make_unique<PyVideoWriter>(
                 path, width, height,
                 MakeEncode(fps, std::move(fps_rational), std::move(codec), crf, std::move(preset), bit_rate, threads,
                            std::move(pix_fmt)));
           }),
           py::arg("path"), py::arg("width"), py::arg("height"), WFM_ENCODE_ARGS)
      .def("write", &PyVideoWriter::Write, py::arg("frames"), "uint8 [t, H, W, 3] or [H, W, 3].")
      .def("close", &PyVideoWriter::Close)
      .def_property_readonly("frames_written", &PyVideoWriter::frames_written)
      .def("__enter__", [](PyVideoWriter& w) -> PyVideoWriter& { return w; }, py::return_value_policy::reference)
      .def("__exit__", [](PyVideoWriter& w, py::object type, py::object, py::object) {
        if (type.is_none()) {
          w.Close();
        } else {
          w.Abort();
        }
        return false;
      });

  m.def(
      "write_png", [](const Path& path, const at::Tensor& frame) { Check(WritePng(path.value, frame)); },
      py::arg("path"), py::arg("frame"), GilRelease(), "Writes one uint8 [H, W, 3] frame as PNG.");
  m.def(
      "write_png_frames",
      [](const Path& dir, const at::Tensor& frames, const std::string& prefix) {
        Check(WritePngFrames(dir.value, frames, prefix));
      },
      py::arg("dir"), py::arg("frames"), py::arg("prefix") = "frame_", GilRelease(),
      "Writes uint8 [T, H, W, 3] frames as DIR/PREFIX000000.png, ...");
  m.def(
      "read_image", [](const Path& path) { return Unwrap(ReadImage(path.value)); }, py::arg("path"), GilRelease(),
      "Reads a PNG (or any single image FFmpeg decodes) as uint8 [H, W, 3].");
  m.def("frames_to_model_input", &FramesToModelInput, py::arg("frames"), GilRelease(),
        "uint8 [T, H, W, 3] -> float32 [3, T, H, W] in [-1, 1] (the tokenizer's input convention).");
  m.def("model_output_to_frames", &ModelOutputToFrames, py::arg("video"), GilRelease(),
        "float [3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3] (clamped, rounded).");

  m.def(
      "simulate_clip",
      [](uint64_t seed, int width, int height, double fps, int num_frames, int min_objects, int max_objects,
         double occluder_probability, bool vary_lighting) {
        world::WorldOptions o;
        o.width = width;
        o.height = height;
        o.fps = fps;
        o.num_frames = num_frames;
        o.min_objects = min_objects;
        o.max_objects = max_objects;
        o.occluder_probability = occluder_probability;
        o.vary_lighting = vary_lighting;
        if (width < 8 || height < 8 || num_frames < 1 || fps <= 0 || min_objects < 0 || max_objects < min_objects)
          throw py::value_error("simulate_clip: need width, height >= 8, num_frames >= 1, fps > 0, "
                                "0 <= min_objects <= max_objects");
        world::Clip c;
        {
          py::gil_scoped_release release;
          c = world::SimulateClip(o, seed);
        }
        return py::make_tuple(c.frames, c.caption, JsonToPy(c.ToJson().dump()));
      },
      py::arg("seed"), py::kw_only(), py::arg("width") = 128, py::arg("height") = 128, py::arg("fps") = 12.0,
      py::arg("num_frames") = 33, py::arg("min_objects") = 1, py::arg("max_objects") = 3,
      py::arg("occluder_probability") = 0.5, py::arg("vary_lighting") = true,
      "The embedded physical world (balls and boxes under gravity, occluder, lighting): (frames uint8\n"
      "[T, H, W, 3], caption, ground truth dict with tracks). The same (options, seed) gives the same clip.");
}

#undef WFM_DECODE_ARGS
#undef WFM_ENCODE_ARGS

}  // namespace

WFM_PY_BINDINGS(core, 10, "", Bind);

}  // namespace wfm::py
