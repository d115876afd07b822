import csv
import io

import pytest

from services.keys.export import encode_rows, neutralise, stream_csv


@pytest.mark.parametrize("cell", ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx", '=HYPERLINK("http://x")'])
def test_cells_a_spreadsheet_would_run_as_formulas_are_neutralised(cell):
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", "a=b", "kwk_abc", "", "1-2"])
def test_ordinary_cells_are_left_alone(cell):
    assert neutralise(cell) == cell


def test_rows_are_rfc4180_quoted_with_crlf_line_ends():
    encoded = encode_rows([["a,b", 'say "hi"', "line\nbreak"]]).decode()
    assert encoded == '"a,b","say ""hi""","line\nbreak"\r\n'
    assert next(csv.reader(io.StringIO(encoded))) == ["a,b", 'say "hi"', "line\nbreak"]


async def test_the_stream_yields_a_header_then_bounded_chunks():
    async def rows():
        for i in range(1234):
            yield (str(i), f"=name{i}", "org", "2027-01-01", "admin", "2026-01-01T00:00:00", "kwk_x")

    chunks = [chunk async for chunk in stream_csv(rows())]
    assert chunks[0].startswith(b"\xef\xbb\xbf")
    assert len(chunks) == 1 + 3  # header, 500, 500, 234
    parsed = list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))
    assert parsed[0][0] == "id" and len(parsed) == 1235
    assert parsed[1][1] == "'=name0"
