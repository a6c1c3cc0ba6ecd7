"""Donut's `JSONParseEvaluator` (clovaai/donut, donut/util.py), transcribed as the reference the KIE scorer
is tested against: its own normalisation, tree building, zss costs and nltk's edit distance, kept in
Donut's structure on purpose (not sharing any code with `h2ovl.scoring.kie`)."""

from __future__ import annotations

import zss
from nltk import edit_distance


def normalize_dict(data):
    if not data:
        return {}
    if isinstance(data, dict):
        new_data = dict()
        for key in sorted(data.keys(), key=lambda k: (len(k), k)):
            value = normalize_dict(data[key])
            if value:
                if not isinstance(value, list):
                    value = [value]
                new_data[key] = value
    elif isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            new_data = []
            for item in data:
                item = normalize_dict(item)
                if item:
                    new_data.append(item)
        else:
            new_data = [str(item).strip() for item in data if type(item) in {str, int, float} and str(item).strip()]
    else:
        new_data = [str(data).strip()]
    return new_data


def flatten(data: dict):
    flatten_data = list()

    def _flatten(value, key=""):
        if type(value) is dict:
            for child_key, child_value in value.items():
                _flatten(child_value, f"{key}.{child_key}" if key else child_key)
        elif type(value) is list:
            for value_item in value:
                _flatten(value_item, key)
        else:
            flatten_data.append((key, value))

    _flatten(data)
    return flatten_data


def update_cost(node1, node2):
    label1, label2 = node1.label, node2.label
    label1_leaf, label2_leaf = "<leaf>" in label1, "<leaf>" in label2
    if label1_leaf and label2_leaf:
        return edit_distance(label1.replace("<leaf>", ""), label2.replace("<leaf>", ""))
    if not label1_leaf and label2_leaf:
        return 1 + len(label2.replace("<leaf>", ""))
    if label1_leaf and not label2_leaf:
        return 1 + len(label1.replace("<leaf>", ""))
    return int(label1 != label2)


def insert_and_remove_cost(node):
    label = node.label
    return len(label.replace("<leaf>", "")) if "<leaf>" in label else 1


def construct_tree_from_dict(data, node_name=None):
    if node_name is None:
        node_name = "<root>"
    node = zss.Node(node_name)
    if isinstance(data, dict):
        for key, value in data.items():
            node.addkid(construct_tree_from_dict(value, key))
    elif isinstance(data, list):
        if all(isinstance(item, dict) for item in data):
            for item in data:
                node.addkid(construct_tree_from_dict(item, "<subtree>"))
        else:
            for item in data:
                node.addkid(zss.Node(f"<leaf>{item}"))
    else:
        raise Exception(data, node_name)
    return node


def _distance(a, b):
    return zss.distance(
        a,
        b,
        get_children=zss.Node.get_children,
        insert_cost=insert_and_remove_cost,
        remove_cost=insert_and_remove_cost,
        update_cost=update_cost,
        return_operations=False,
    )


def cal_acc(pred, answer):
    pred = construct_tree_from_dict(normalize_dict(pred))
    answer = construct_tree_from_dict(normalize_dict(answer))
    return max(0, 1 - (_distance(pred, answer) / _distance(construct_tree_from_dict(normalize_dict({})), answer)))


def cal_f1(preds, answers):
    total_tp, total_fn_or_fp = 0, 0
    for pred, answer in zip(preds, answers):
        pred, answer = flatten(normalize_dict(pred)), flatten(normalize_dict(answer))
        for field in pred:
            if field in answer:
                total_tp += 1
                answer.remove(field)
            else:
                total_fn_or_fp += 1
        total_fn_or_fp += len(answer)
    return total_tp / (total_tp + total_fn_or_fp / 2)
