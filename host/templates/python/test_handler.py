"""Unit tests of handler.py, run natively: ``python -m unittest``."""

import json
import unittest

import handler


class HandlerTest(unittest.TestCase):
    def setUp(self):
        self.lines = []

    def log(self, level, message):
        self.lines.append((level, message))

    def test_greets_by_name(self):
        out = handler.handle("{{TASK_TYPE}}", '{"name": "Ada"}', 1, self.log)
        self.assertEqual(json.loads(out), {"greeting": "Hello, Ada!"})
        self.assertIn(("info", "greeted Ada"), self.lines)

    def test_bad_params_are_fatal(self):
        for params in ['{}', '{"name": 5}', '{"name": " "}', '{"name": "a", "x": 1}', '[]', 'nope']:
            with self.subTest(params=params):
                with self.assertRaises(handler.Fatal):
                    handler.handle("{{TASK_TYPE}}", params, 1, self.log)

    def test_a_transient_failure_is_retryable(self):
        with self.assertRaisesRegex(handler.Retryable, "attempt 2"):
            handler.handle("{{TASK_TYPE}}", '{"name": "Ada", "fail": "retryable"}', 2, self.log)

    def test_other_task_types_are_refused(self):
        with self.assertRaises(handler.Fatal):
            handler.handle("other", '{"name": "Ada"}', 1, self.log)


if __name__ == "__main__":
    unittest.main()
