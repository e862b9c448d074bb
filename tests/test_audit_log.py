"""`audit_log.delivery`: how a trained-example log covers a stream, by hand."""

from egin_tf.train import audit_log

STREAM = [("a", 0, 10), ("a", 1, 11), ("b", 0, 20), ("b", 1, 21)]


def test_every_record_once_is_exactly_once():
  report = audit_log.delivery(STREAM, STREAM)
  assert report == audit_log.Delivery(4, 4, 0, [], [], [])
  assert report.exactly_once
  assert str(report) == ("4 records: 4 trained once, 0 duplicate trainings, "
                         "0 never trained, 0 trained rows not of the stream")


def test_duplicates_gaps_and_foreign_rows_are_counted():
  # A batch ("a" 1, "b" 0) trained twice after a kill, "a" 1 a third time,
  # "b" 1 never; one row at a known position with another fingerprint (a
  # shard rewritten) and one at no position of the stream.
  trained = [("a", 0, 10), ("a", 1, 11), ("b", 0, 20), ("a", 1, 11), ("b", 0, 20),
             ("a", 1, 11), ("b", 1, 99), ("c", 0, 30)]
  report = audit_log.delivery(trained, STREAM)
  assert report.expected == 4
  assert report.once == 1            # only "a" 0
  assert report.duplicates == 2 + 1  # "a" 1 twice more, "b" 0 once more
  assert report.repeated == [("a", 1, 3), ("b", 0, 2)]
  assert report.missing == [("b", 1)]
  assert report.foreign == [("b", 1, 99), ("c", 0, 30)]
  assert not report.exactly_once
