"""Stored videos read straight from their ArrayRecord files: a clip touches only its own frames.

vidmix writes each video as one serialized `tf.Example` per ArrayRecord record, uncompressed, one
record per chunk (`tfds_builder.UncompressedArrayRecords`). ArrayRecord's reader hands out a whole
record, a copy of every frame of the video (5-7 MB for 5-10 s at short side 256): 3.8 ms per clip
in bench/data.py, ten times a plain copy of the same bytes, for a clip that uses ~0.6 MB of them
(16 frames). Here the file is memory-mapped and
read the way the Riegeli/records format lays it out (google/riegeli,
doc/riegeli_records_file_format.md):

- the file is a sequence of chunks, interrupted at every multiple of 64 KiB by a 24-byte block
  header; a record here is the value of a "simple" chunk ('r'): a compression byte (0: none), the
  varint size of the record sizes, the sizes, then the record itself;
- inside the record, the `tf.Example`'s protobuf wire format is walked, field headers only: the
  small fields (label, size, fps, ...) are parsed by protobuf, and the `frames` list is indexed
  lazily, one length prefix per frame, so frame i is copied out alone.

Chunk headers are indexed once per file, when a process first reads it. Hashes are not checked
(ArrayRecord's reader checks them): a damaged frame fails as a JPEG, and a record whose structure
does not add up raises `DamagedRecordError` naming the file. A file written another way
(compressed, several records per chunk: TFDS's default writer, or a dataset built before vidmix
wrote them uncompressed) is read whole with ArrayRecord's reader instead, with the same result.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import threading
from collections.abc import Mapping, Sequence

import numpy as np
from array_record.python import array_record_module
from tensorflow_datasets.proto import tf_example_pb2

BLOCK = 1 << 16
BLOCK_HEADER = 24
USABLE = BLOCK - BLOCK_HEADER
CHUNK_HEADER = 40
SIMPLE_CHUNK = ord("r")
# the first 64 bytes of every Riegeli/records file (block header, then the signature chunk)
SIGNATURE = bytes.fromhex("83af70d10d884a3f 0000000000000000 4000000000000000 91bac23c9287e1a9"
                          "0000000000000000 e19f13c0e9b1c372 7300000000000000 0000000000000000")


class DamagedRecordError(ValueError):
    """A record's bytes do not form what vidmix wrote: the file is damaged (rebuild it)."""


def _position(data: int) -> int:
    """File position of the `data`-th byte that is not a block header."""
    return data // USABLE * BLOCK + BLOCK_HEADER + data % USABLE


def _data_offset(position: int) -> int:
    """Inverse of `_position`; a position inside a block header maps to the byte after it."""
    return position - BLOCK_HEADER * (position // BLOCK) - min(position % BLOCK, BLOCK_HEADER)


def _chunk_end(begin: int, data_size: int, num_records: int) -> int:
    """Where the chunk at file position `begin` ends (the format's formula, padding included)."""
    size = CHUNK_HEADER + data_size
    overhead = (size + (begin + USABLE - 1) % BLOCK) // USABLE
    end = begin + size + overhead * BLOCK_HEADER
    after_records = begin + num_records
    remaining = BLOCK - 1 - (after_records + BLOCK - 1) % BLOCK
    return max(end, after_records + max(remaining - (USABLE - 1), 0))


def _varint(buf, i: int) -> tuple[int, int]:
    """(value, index after it) of the varint at buf[i]."""
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise DamagedRecordError("a varint runs past its field")
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        i, shift = i + 1, shift + 7


def _length_delimited(buf, i: int, field: int, where: str) -> tuple[int, int]:
    """(size, index of its first byte) of the length-delimited protobuf field number `field`
    whose tag is at buf[i]."""
    try:
        tag, i = _varint(buf, i)
        if tag != (field << 3 | 2):
            raise DamagedRecordError(f"protobuf tag {tag} where vidmix wrote field {field}")
        return _varint(buf, i)
    except DamagedRecordError as e:
        raise DamagedRecordError(f"{where}: {e}: rebuild the dataset") from None


class NotFlat(Exception):
    """The file is not one uncompressed record per chunk; read it with ArrayRecord's reader."""


class RecordFile:
    """One ArrayRecord file of `num_records` records, memory-mapped when first read (so a copy
    pickled to a grain worker process maps it there). `record(i)` gives a `StoredRecord`."""

    def __init__(self, path: str, num_records: int):
        self.path, self.num_records = os.fspath(path), num_records
        self._lock = threading.Lock()
        self._state = None  # (mmap, start of each record's bytes as data offsets, sizes) or
        # (None, ArrayRecord reader) for a file that is not flat

    def __getstate__(self):
        return {"path": self.path, "num_records": self.num_records}

    def __setstate__(self, state):
        self.__init__(state["path"], state["num_records"])

    def __repr__(self):
        return f"RecordFile({self.path!r}, num_records={self.num_records})"

    def _open(self):
        with self._lock:
            if self._state is None:
                try:
                    self._state = self._index()
                except NotFlat:
                    reader = array_record_module.ArrayRecordReader(
                        self.path, "readahead_buffer_size:0")
                    self._state = (None, reader)
        return self._state

    def _index(self):
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < len(SIGNATURE):
                raise DamagedRecordError(f"{self.path}: {size} bytes, not an ArrayRecord file")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if mm[:len(SIGNATURE)] != SIGNATURE:
            raise DamagedRecordError(f"{self.path} is not an ArrayRecord (Riegeli) file")
        self._mm = mm
        try:
            return mm, *self._scan_chunks(size)
        except (DamagedRecordError, struct.error) as e:  # struct: a header cut by the file's end
            raise DamagedRecordError(f"{self.path}: {e}: rebuild the dataset") from None

    def _scan_chunks(self, size: int):
        """(start, size) of every record's bytes, as data offsets: the first `num_records`
        simple chunks, walked by their headers."""
        starts, sizes = np.zeros(self.num_records, np.int64), np.zeros(self.num_records, np.int64)
        begin, found = 0, 0
        while found < self.num_records:
            if begin + BLOCK_HEADER + CHUNK_HEADER > size:
                raise DamagedRecordError(
                    f"the file ends after {found} of its {self.num_records} records (truncated?)")
            header = self._read(_data_offset(begin), CHUNK_HEADER)
            _, data_size, _, type_and_count, decoded_size = struct.unpack("<5Q", header)
            chunk_type, count = type_and_count & 0xFF, type_and_count >> 8
            if chunk_type == SIMPLE_CHUNK:
                if count != 1:
                    raise NotFlat
                data = _data_offset(begin) + CHUNK_HEADER
                head = self._read(data, min(data_size, 21))
                if len(head) < 3:
                    raise DamagedRecordError(f"an empty chunk at byte {begin}")
                if head[0] != 0:
                    raise NotFlat  # compressed
                sizes_size, i = _varint(head, 1)
                record_size, _ = _varint(head[:i + sizes_size], i)
                if record_size != decoded_size or i + sizes_size + record_size != data_size:
                    raise DamagedRecordError(f"the chunk at byte {begin} does not add up")
                starts[found], sizes[found] = data + i + sizes_size, record_size
                found += 1
            begin = _chunk_end(begin, data_size, count)
        if self.num_records and _position(int(starts[-1] + sizes[-1]) - 1) >= size:
            raise DamagedRecordError("the file is truncated")
        return starts, sizes

    def _read(self, data: int, n: int) -> bytes:
        """`n` bytes from data offset `data`, block headers skipped."""
        pieces = []
        while n > 0:
            position = _position(data)
            take = min(n, BLOCK - position % BLOCK)
            pieces.append(self._mm[position:position + take])
            data, n = data + take, n - take
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def record(self, i: int) -> Mapping:
        """Record `i` as a lazily read `tf.Example` (a `StoredRecord`), or, in a file that is not
        flat, parsed whole from ArrayRecord's reader."""
        mm, *index = self._open()
        if mm is None:
            return StoredVideo(index[0].read([i])[0])
        starts, sizes = index
        return StoredRecord(self, int(starts[i]), int(sizes[i]), i)


class StoredVideo(Mapping):
    """One stored example read whole (a file that is not flat, or not local), parsed by protobuf
    only as far as a clip needs it: a field is converted when it is read, and
    `record["frames"][i]` copies out frame i alone. TFDS's own parse makes
    every frame of the video a NumPy object first (1.9 against 0.9 ms for 250 frames,
    docs/benchmarks.md). Scalars read as Python scalars (text as bytes), as TFDS gives them."""

    def __init__(self, serialized: bytes):
        self._features = tf_example_pb2.Example.FromString(serialized).features.feature

    def __getitem__(self, name):
        feature = self._features[name]
        values = getattr(feature, feature.WhichOneof("kind")).value
        return values if name == "frames" else values[0]

    def __iter__(self):
        return iter(self._features)

    def __len__(self):
        return len(self._features)


class StoredRecord(Mapping):
    """One stored video, read field by field: names and small fields at once (a few hundred
    bytes), `record["frames"][i]` copies out frame i alone. Values as `pipeline.StoredVideo`
    gives them: scalars as Python scalars (text as bytes), frames as a sequence of bytes."""

    def __init__(self, file: RecordFile, start: int, size: int, index: int):
        self._file, self._where = file, f"{file.path}, record {index}"
        self._fields, self._frames = {}, None
        end = start + size
        tag_and_size = file._read(start, min(size, 11))
        features, begin = _length_delimited(tag_and_size, 0, 1, self._where)
        data, stop = start + begin, start + begin + features
        if stop != end:
            raise DamagedRecordError(f"{self._where}: not a tf.Example")
        while data < stop:  # Features: map<string, Feature> entries
            header = file._read(data, min(stop - data, 11))
            entry_size, i = _length_delimited(header, 0, 1, self._where)
            entry = data + i
            data = entry + entry_size
            head = file._read(entry, min(entry_size, 512))  # key, then the value's header
            key_size, j = _length_delimited(head, 0, 1, self._where)
            if j + key_size > len(head):  # a key this long is no field vidmix wrote
                head = file._read(entry, entry_size)
            key = bytes(head[j:j + key_size]).decode()
            if key == "frames":
                self._fields[key] = None
                self._frames = (entry, entry_size, j + key_size)
            else:
                # the entry alone, as the one field of a tf.Example, for protobuf to parse
                features = b"\x0a" + _encode_varint(entry_size) + file._read(entry, entry_size)
                feature = tf_example_pb2.Example.FromString(
                    b"\x0a" + _encode_varint(len(features)) + features).features.feature[key]
                self._fields[key] = getattr(feature, feature.WhichOneof("kind")).value[0]
        if data != stop:
            raise DamagedRecordError(f"{self._where}: fields overrun the record")

    def __getitem__(self, name):
        value = self._fields[name]
        if name == "frames":
            if not isinstance(value, FrameList):
                value = self._fields[name] = FrameList(self._file, *self._frames, self._where)
        return value

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)


class FrameList(Sequence):
    """The `frames` BytesList of one record, indexed as far as it has been read: frame i costs
    the length prefixes of frames 0..i and the copy of frame i's bytes."""

    def __init__(self, file: RecordFile, entry: int, entry_size: int, value_at: int, where: str):
        self._file, self._where = file, where
        header = file._read(entry + value_at, 22)  # Feature, then its BytesList
        value_size, i = _length_delimited(header, 0, 2, self._where)
        list_size, k = _length_delimited(header, i, 1, self._where)
        if value_at + i + value_size != entry_size or k + list_size != i + value_size:
            raise DamagedRecordError(f"{where}: the frames field does not add up")
        self._next, self._end = entry + value_at + k, entry + value_at + k + list_size
        self._starts, self._sizes = [], []
        self._length = None

    def _scan(self, upto: int | None):
        """Indexes frames until frame `upto` is known (None: all). Each frame is a BytesList
        value: tag 0x0a, varint size, bytes; only the tag and size are read (inlined: this loop
        runs once per stored frame up to the clip's last)."""
        file, starts, sizes = self._file, self._starts, self._sizes
        mm, at, end = file._mm, self._next, self._end
        while at < end and (upto is None or len(starts) <= upto):
            position = _position(at)
            if position % BLOCK + 11 <= BLOCK and at + 11 <= end:
                header = mm[position:position + 11]
            else:  # the header crosses a block header, or the record ends within 11 bytes
                header = file._read(at, min(11, end - at))
            size, i = _length_delimited(header, 0, 1, f"{self._where}, frame {len(starts)}")
            starts.append(at + i)
            sizes.append(size)
            at += i + size
        self._next = at
        if at > end:
            raise DamagedRecordError(f"{self._where}: a frame overruns the record")
        if at == end:
            self._length = len(starts)

    def __len__(self):
        if self._length is None:
            self._scan(None)
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if i >= len(self._starts):
            self._scan(i)
        if not 0 <= i < len(self._starts):
            raise IndexError(f"frame {i} of {len(self)}")
        return self._file._read(self._starts[i], self._sizes[i])


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class SplitRecords:
    """A split's records (`tfds` file instructions: files, with records skipped and taken) as
    `StoredRecord`s, indexable and picklable (grain's source)."""

    def __init__(self, file_instructions):
        self.files, self.ranges, self.offsets = {}, [], [0]
        for instruction in file_instructions:
            path = os.fspath(instruction.filename)
            if path not in self.files:
                self.files[path] = RecordFile(path, instruction.examples_in_shard)
            self.ranges.append((self.files[path], instruction.skip))
            self.offsets.append(self.offsets[-1] + instruction.take)

    def __len__(self):
        return self.offsets[-1]

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} of {len(self)}")
        k = bisect.bisect_right(self.offsets, i) - 1
        file, skip = self.ranges[k]
        return file.record(skip + i - self.offsets[k])

    def __repr__(self):
        return f"SplitRecords({len(self.files)} files, {len(self)} records)"
